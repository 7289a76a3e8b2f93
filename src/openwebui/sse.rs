//! Server-sent events of `/api/chat/completions` with `stream: true`.
//!
//! Open WebUI relays the upstream's bytes, but may put a `{"sources": …}`
//! event (no `choices`) first and, when the upstream fails mid-stream, a
//! `{"error": …}` event before `[DONE]`. Pure: bytes in, events out, so it
//! is tested with every chunking.

/// One meaningful event of a completion stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Delta(String),
    Sources(serde_json::Value),
    Usage(serde_json::Value),
    Model(String),
    Error(String),
    Done,
}

#[derive(Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<StreamEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                self.dispatch(&mut out);
            } else if let Some(value) = line.strip_prefix("data:") {
                self.data
                    .push(value.strip_prefix(' ').unwrap_or(value).to_string());
            }
            // Comments (":…"), `event:`, `id:` and `retry:` carry nothing we use.
        }
        out
    }

    /// Flushes a last event not followed by a blank line.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            out.extend(self.push(&rest));
            out.extend(self.push(b"\n"));
        }
        self.dispatch(&mut out);
        out
    }

    fn dispatch(&mut self, out: &mut Vec<StreamEvent>) {
        if self.data.is_empty() {
            return;
        }
        let data = std::mem::take(&mut self.data).join("\n");
        interpret(&data, out);
    }
}

fn interpret(data: &str, out: &mut Vec<StreamEvent>) {
    if data.trim() == "[DONE]" {
        out.push(StreamEvent::Done);
        return;
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
        return;
    };
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        let message = err
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string());
        out.push(StreamEvent::Error(message));
        return;
    }
    if let Some(sources) = v.get("sources") {
        out.push(StreamEvent::Sources(sources.clone()));
    }
    if let Some(model) = v.get("model").and_then(|m| m.as_str()) {
        out.push(StreamEvent::Model(model.to_string()));
    }
    if let Some(content) = v
        .pointer("/choices/0/delta/content")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty())
    {
        out.push(StreamEvent::Delta(content.to_string()));
    }
    if let Some(usage) = v.get("usage").filter(|u| !u.is_null()) {
        out.push(StreamEvent::Usage(usage.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "data: {\"sources\":[{\"source\":{\"id\":\"kb\"}}]}\n\n\
        data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n\
        : keep-alive\n\n\
        data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"lo ✓\"}}]}\r\n\r\n\
        data: {\"id\":\"c\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"total_tokens\":3}}\n\n\
        data: [DONE]\n\n";

    fn collect(chunks: &[&[u8]]) -> Vec<StreamEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.push(c));
        }
        out.extend(p.finish());
        out
    }

    fn text(events: &[StreamEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Delta(d) => Some(d.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn whole_stream() {
        let events = collect(&[STREAM.as_bytes()]);
        assert!(matches!(events[0], StreamEvent::Sources(_)));
        assert_eq!(text(&events), "Hello ✓");
        assert!(events.iter().any(|e| matches!(e, StreamEvent::Usage(_))));
        assert_eq!(events.last(), Some(&StreamEvent::Done));
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let whole = collect(&[STREAM.as_bytes()]);
        let bytes = STREAM.as_bytes();
        for size in [1, 2, 3, 7, 13, 64] {
            let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
            assert_eq!(collect(&chunks), whole, "chunk size {size}");
        }
    }

    #[test]
    fn mid_stream_error() {
        let events = collect(&[
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            b"data: {\"error\":{\"message\":\"Chat completion stream failed\"}}\n\ndata: [DONE]\n\n",
        ]);
        assert_eq!(
            events[1],
            StreamEvent::Error("Chat completion stream failed".into())
        );
    }

    #[test]
    fn last_event_without_blank_line() {
        let events = collect(&[b"data: [DONE]"]);
        assert_eq!(events, vec![StreamEvent::Done]);
    }
}
