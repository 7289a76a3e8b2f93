//! Chats: completions (whole or streamed) and saved chats.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use reqwest::header::CONTENT_TYPE;

use super::client::*;
use super::sse::{SseParser, StreamEvent};
use super::*;

impl Client {
    /// A non-streaming completion.
    pub async fn chat(
        &self,
        request: &ChatRequest,
        timeout: Duration,
    ) -> Result<ChatAnswer, Error> {
        let path = "/api/chat/completions";
        let body = request.body(false);
        let v = self
            .json(Method::POST, path, Repeat::OnlyIfUnprocessed, |r| {
                Ok(r.timeout(timeout).json(&body))
            })
            .await?;
        let content = v
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::UnexpectedResponse {
                path: path.into(),
                message: format!(
                    "no choices[0].message.content in {}",
                    error::one_line(&v.to_string(), 200)
                ),
            })?;
        Ok(ChatAnswer {
            content: content.to_string(),
            model: str_field(&v, "model"),
            sources: v.get("sources").cloned().unwrap_or(Value::Array(vec![])),
            usage: v.get("usage").cloned().unwrap_or(Value::Null),
        })
    }

    /// A streaming completion; `on_delta` sees each piece as it arrives.
    pub async fn chat_stream(
        &self,
        request: &ChatRequest,
        timeout: Duration,
        mut on_delta: impl FnMut(&str),
    ) -> Result<ChatAnswer, Error> {
        let path = "/api/chat/completions";
        let body = request.body(true);
        let (response, _permit) = self
            .execute(Method::POST, path, Repeat::OnlyIfUnprocessed, |r| {
                Ok(r.timeout(timeout).json(&body))
            })
            .await?;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if !is_sse {
            // Some setups answer a stream request with one JSON completion.
            let v = read_json(path, response, timeout, self.inner.clock.now_system_time()).await?;
            let content = v
                .pointer("/choices/0/message/content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            on_delta(&content);
            return Ok(ChatAnswer {
                content,
                model: str_field(&v, "model"),
                sources: v.get("sources").cloned().unwrap_or(Value::Array(vec![])),
                usage: v.get("usage").cloned().unwrap_or(Value::Null),
            });
        }
        let mut parser = SseParser::default();
        let mut answer = ChatAnswer {
            sources: Value::Array(vec![]),
            ..Default::default()
        };
        let mut stream = response.bytes_stream();
        let mut done = false;
        let mut apply =
            |events: Vec<StreamEvent>, answer: &mut ChatAnswer| -> Result<bool, Error> {
                for event in events {
                    match event {
                        StreamEvent::Delta(d) => {
                            on_delta(&d);
                            answer.content.push_str(&d);
                        }
                        StreamEvent::Sources(s) => answer.sources = s,
                        StreamEvent::Usage(u) => answer.usage = u,
                        StreamEvent::Model(m) => answer.model = Some(m),
                        StreamEvent::Error(detail) => {
                            return Err(Error::Server {
                                path: path.into(),
                                status: 502,
                                detail: format!("stream failed: {detail}"),
                            });
                        }
                        StreamEvent::Done => return Ok(true),
                    }
                }
                Ok(false)
            };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| map_send_error(path, e, timeout))?;
            if apply(parser.push(&chunk), &mut answer)? {
                done = true;
                break;
            }
        }
        if !done {
            done = apply(parser.finish(), &mut answer)?;
        }
        if !done && answer.content.is_empty() {
            return Err(Error::UnexpectedResponse {
                path: path.into(),
                message: "the stream ended without an answer".into(),
            });
        }
        Ok(answer)
    }

    /// Stores a prompt and its answer as a chat that the Open WebUI UI
    /// shows like its own (a proper `history` tree). Returns the chat id.
    pub async fn save_chat(
        &self,
        title: &str,
        model: &str,
        prompt: &str,
        answer: &str,
    ) -> Result<String, Error> {
        let path = "/api/v1/chats/new";
        let now = self
            .inner
            .clock
            .now_system_time()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let (user_id, assistant_id) = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        );
        let secs = now.as_secs();
        let body = json!({"chat": {
            "title": title,
            "models": [model],
            "history": {
                "currentId": assistant_id,
                "messages": {
                    user_id.clone(): {"id": user_id, "parentId": null, "childrenIds": [assistant_id],
                        "role": "user", "content": prompt, "timestamp": secs, "models": [model]},
                    assistant_id.clone(): {"id": assistant_id, "parentId": user_id, "childrenIds": [],
                        "role": "assistant", "content": answer, "model": model, "modelName": model,
                        "done": true, "timestamp": secs},
                }
            },
            "messages": [
                {"id": user_id, "parentId": null, "childrenIds": [assistant_id], "role": "user",
                 "content": prompt, "timestamp": secs, "models": [model]},
                {"id": assistant_id, "parentId": user_id, "childrenIds": [], "role": "assistant",
                 "content": answer, "model": model, "done": true, "timestamp": secs},
            ],
            "tags": [],
            "timestamp": now.as_millis() as u64,
        }});
        let v = self
            .json(Method::POST, path, Repeat::OnlyIfUnprocessed, |r| {
                Ok(r.json(&body))
            })
            .await?;
        str_field(&v, "id").ok_or_else(|| Error::UnexpectedResponse {
            path: path.into(),
            message: "the new chat has no id".into(),
        })
    }

    /// Every chat of the account, newest first.
    pub async fn chats(&self) -> Result<Vec<ChatSummary>, Error> {
        let mut out = Vec::new();
        for page in 1.. {
            let path = format!("/api/v1/chats/?page={page}");
            let v = self.get(&path).await?;
            let items: Vec<ChatSummary> = parse_list(&v, &path, "")?;
            if items.is_empty() {
                break;
            }
            out.extend(items);
        }
        Ok(out)
    }

    pub async fn chat_by_id(&self, id: &str) -> Result<Value, Error> {
        self.get(&format!("/api/v1/chats/{id}")).await
    }
}
