//! Prompt and body templates (minijinja, strict undefined).
//!
//! Templates are compiled when rules load, so a syntax error or a variable
//! the rule's trigger can never provide is a `ferry check` error with the
//! position in the rule file, not a failure at 3 a.m.

use minijinja::{Environment, UndefinedBehavior};

/// Context names every template may use (DESIGN §3).
pub const COMMON: &[&str] = &["rule", "now", "vars", "trigger"];
pub const DOCUMENT: &[&str] = &["file", "collection"];
pub const SCHEDULE: &[&str] = &["schedule", "last_run", "last_success"];
pub const WEBHOOK: &[&str] = &["payload", "query", "headers"];
/// Extra names of delivery bodies.
pub const RESULT: &[&str] = &[
    "answer", "sources", "model", "usage", "chat", "job", "event", "error", "document",
];

/// The environment every template is compiled and rendered in.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Prompts are plain text; HTML escaping would mangle them.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env
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

/// Renders a template with a JSON context. Strict: an undefined variable
/// is an error, not an empty string.
pub fn render(source: &str, context: &serde_json::Value) -> Result<String, TemplateProblem> {
    let env = environment();
    let problem = |e: minijinja::Error| TemplateProblem {
        line_in_template: e.line(),
        message: match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        },
    };
    let template = env.template_from_str(source).map_err(problem)?;
    template.render(context).map_err(problem)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn local_variables_are_fine() {
        check(
            "{% set x = 1 %}{% for s in sources %}{{ s }}{{ x }}{% endfor %}{{ answer | tojson }}",
            &["sources", "answer"],
        )
        .unwrap();
    }
}
