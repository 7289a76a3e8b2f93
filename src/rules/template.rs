//! Prompt and body templates (minijinja, strict undefined).
//!
//! Templates are checked and compiled when rules load, so a syntax error or
//! a variable the rule's trigger can never provide is a `ferry check` error
//! with the position in the rule file, not a failure at 3 a.m. A rule keeps
//! its compiled [`Template`]s; a render parses nothing.

use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};

/// A template compiled once and kept, with the escaping it renders with.
#[derive(Clone)]
pub struct Template {
    env: Arc<Environment<'static>>,
    source: Arc<str>,
}

const NAME: &str = "t";

impl Template {
    /// A prompt or system message: plain text.
    pub fn compile(source: &str) -> Result<Template, TemplateProblem> {
        Template::compile_escaping(source, minijinja::AutoEscape::None)
    }

    /// A `deliver.body`: JSON-escaped where it builds JSON
    /// ([`is_json_body`]), plain text otherwise.
    pub fn compile_body(source: &str) -> Result<Template, TemplateProblem> {
        let escape = if is_json_body(source) {
            minijinja::AutoEscape::Json
        } else {
            minijinja::AutoEscape::None
        };
        Template::compile_escaping(source, escape)
    }

    fn compile_escaping(
        source: &str,
        escape: minijinja::AutoEscape,
    ) -> Result<Template, TemplateProblem> {
        let mut env = environment_escaping(escape);
        env.add_template_owned(NAME, source.to_string())
            .map_err(problem)?;
        Ok(Template {
            env: Arc::new(env),
            source: source.into(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with a JSON context. Strict: an undefined variable is an
    /// error, not an empty string.
    pub fn render(&self, context: &serde_json::Value) -> Result<String, TemplateProblem> {
        let template = self.env.get_template(NAME).map_err(problem)?;
        template.render(context).map_err(|e| {
            // minijinja does not name what was undefined; the span does.
            let culprit = (e.kind() == minijinja::ErrorKind::UndefinedError)
                .then(|| e.range())
                .flatten()
                .and_then(|r| {
                    // The span starts at the failing lookup (`.topc.title`);
                    // the name it hangs off comes before it.
                    let before = self.source.get(..r.start)?;
                    let start = before
                        .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                        .map_or(0, |i| i + 1);
                    self.source.get(start..r.end)
                })
                .map(str::to_owned);
            let mut p = problem(e);
            if let Some(c) = culprit {
                p.message = format!("{}: `{}`", p.message, c.trim());
            }
            p
        })
    }
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Template").field(&self.source()).finish()
    }
}

fn problem(e: minijinja::Error) -> TemplateProblem {
    TemplateProblem {
        line_in_template: e.line(),
        message: match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        },
    }
}

/// Extra names of delivery bodies.
pub const RESULT: &[&str] = &[
    "answer", "sources", "model", "usage", "chat", "job", "event", "error", "document",
];

/// Instructions one render may run: far above any real prompt or body,
/// far below a loop a payload could make spin (about 0.1 s).
pub const FUEL: u64 = 2_000_000;
/// Nesting (loops, ifs, macros) one render may reach.
pub const RECURSION_LIMIT: usize = 100;

/// The environment every template is compiled and rendered in.
pub fn environment() -> Environment<'static> {
    environment_escaping(minijinja::AutoEscape::None)
}

fn environment_escaping(escape: minijinja::AutoEscape) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Prompts are plain text; HTML escaping would mangle them.
    env.set_auto_escape_callback(move |_| escape);
    env.set_keep_trailing_newline(true);
    // Templates loop over what senders send: bounded, never spinning.
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env
}

/// Whether a `deliver.body` template builds JSON (it starts with `{` or
/// `[`): then every `{{ … }}` is written as a JSON value (a string is
/// quoted and escaped), so an answer cannot inject JSON.
pub fn is_json_body(source: &str) -> bool {
    source.trim_start().starts_with(['{', '['])
}

/// In a JSON body, an interpolation inside a JSON string (`"{{ answer }}"`)
/// would be quoted twice. Returns the template's line of the first one.
pub fn quoted_interpolation(source: &str) -> Option<usize> {
    let (mut in_string, mut escaped, mut line) = (false, false, 1);
    let mut rest = source;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("{{") || rest.starts_with("{%") || rest.starts_with("{#") {
            if in_string && rest.starts_with("{{") {
                return Some(line);
            }
            let close = match &rest[..2] {
                "{{" => "}}",
                "{%" => "%}",
                _ => "#}",
            };
            let end = rest.find(close).map_or(rest.len(), |i| i + 2);
            line += rest[..end].matches('\n').count();
            rest = &rest[end..];
            continue;
        }
        match c {
            '\n' => line += 1,
            '\\' if in_string && !escaped => {
                escaped = true;
                rest = &rest[1..];
                continue;
            }
            '"' if !escaped => in_string = !in_string,
            _ => {}
        }
        escaped = false;
        rest = &rest[c.len_utf8()..];
    }
    None
}

/// Why a template was refused, with its line inside the template when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    pub line_in_template: Option<usize>,
    pub message: String,
}

/// Compiles `source` and checks that it only uses `allowed` top-level names
/// (and what it defines itself).
pub fn check(source: &str, allowed: &[&str]) -> Result<(), TemplateProblem> {
    let env = environment();
    let template = env.template_from_str(source).map_err(|e| TemplateProblem {
        line_in_template: e.line(),
        message: e.detail().unwrap_or("syntax error").to_string(),
    })?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !allowed.contains(&name.as_str()) && env.globals().all(|(g, _)| g != name))
        .collect();
    unknown.sort();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(TemplateProblem {
            line_in_template: None,
            message: format!(
                "uses {} which this rule's trigger never provides (available: {})",
                unknown
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                allowed.join(", ")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, ctx: &serde_json::Value) -> Result<String, TemplateProblem> {
        Template::compile(source)?.render(ctx)
    }

    fn render_body(source: &str, ctx: &serde_json::Value) -> Result<String, TemplateProblem> {
        Template::compile_body(source)?.render(ctx)
    }

    #[test]
    fn an_undefined_value_is_named_at_render() {
        let e = render(
            "Hello {{ vars.who }}, {{ vars.topc.title }}!",
            &serde_json::json!({"vars": {"who": "Ada", "topic": {"title": "x"}}}),
        )
        .unwrap_err();
        assert!(e.message.ends_with("`vars.topc.title`"), "{}", e.message);
    }

    #[test]
    fn syntax_error_has_line() {
        let e = check("line one\n{{ file.name \n", &["file"]).unwrap_err();
        assert!(e.line_in_template.is_some());
    }

    #[test]
    fn unavailable_variable_is_named() {
        let e = check("{{ payload.x }} and {{ rule }}", &["rule", "now"]).unwrap_err();
        assert!(e.message.contains("`payload`"), "{}", e.message);
    }

    #[test]
    fn render_is_strict() {
        let ctx = serde_json::json!({"vars": {"who": "world"}});
        assert_eq!(render("hello {{ vars.who }}", &ctx).unwrap(), "hello world");
        assert!(render("hello {{ vars.nobody }}", &ctx).is_err());
        assert_eq!(
            render("{{ '<b>' }}", &ctx).unwrap(),
            "<b>",
            "no HTML escaping"
        );
    }

    #[test]
    fn a_spinning_template_runs_out_of_fuel() {
        // Security review I5: loops over payload arrays were unbounded.
        let ctx = serde_json::json!({"payload": {"items": (0..2000).collect::<Vec<_>>()}});
        let e = render(
            "{% for a in payload.items %}{% for b in payload.items %}{{ a + b }}{% endfor %}{% endfor %}",
            &ctx,
        )
        .unwrap_err();
        assert!(e.message.contains("fuel"), "{}", e.message);
        // An ordinary loop is far from the limit.
        let ok = render("{% for a in payload.items %}{{ a }},{% endfor %}", &ctx).unwrap();
        assert!(ok.ends_with("1999,"));
        let deep = "{% if true %}".repeat(200) + &"{% endif %}".repeat(200);
        assert!(render(&deep, &ctx).is_err(), "recursion limit");
    }

    #[test]
    fn json_bodies_escape_what_they_interpolate() {
        let ctx = serde_json::json!({"answer": "x\", \"admin\": true, \"y\": \"z"});
        let body = render_body("{\"text\": {{ answer }}}", &ctx).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["text"], ctx["answer"]);
        assert!(v.get("admin").is_none());
        // `tojson` as documented keeps working, not escaped twice.
        let body = render_body("{\"text\": {{ answer | tojson }}}", &ctx).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["text"],
            ctx["answer"]
        );
        // A text body stays text.
        assert_eq!(
            render_body("A: {{ answer }}", &ctx).unwrap(),
            format!("A: {}", ctx["answer"].as_str().unwrap())
        );
    }

    #[test]
    fn interpolations_inside_json_strings_are_found() {
        assert_eq!(
            quoted_interpolation("{\"text\": \"{{ answer }}\"}"),
            Some(1)
        );
        assert_eq!(
            quoted_interpolation("{\n\"a\": 1,\n\"t\": \"Re: {{ x }}\"}"),
            Some(3)
        );
        assert_eq!(
            quoted_interpolation("{\"text\": {{ answer | tojson }}}"),
            None
        );
        assert_eq!(
            quoted_interpolation("{\"q\": \"say \\\"hi\\\"\", \"t\": {{ a }}}"),
            None
        );
        assert_eq!(
            quoted_interpolation("{% if x %}{\"a\": {{ x }}}{% endif %}"),
            None
        );
    }

    #[test]
    fn local_variables_are_fine() {
        check(
            "{% set x = 1 %}{% for s in sources %}{{ s }}{{ x }}{% endfor %}{{ answer | tojson }}",
            &["sources", "answer"],
        )
        .unwrap();
    }
}
