//! `--format '{{...}}'`: the part of Go's text/template that Docker users write against
//! `inspect` output, evaluated over our JSON.
//!
//! Supported: literal text; `{{.A.B}}` (field paths; Docker's CamelCase names match our
//! snake_case keys, `.Config` is our `spec`); `{{json .A}}`; `{{index .A "key"}}` (also with a
//! number for arrays); `{{upper .A}}`, `{{lower .A}}`; `{{.}}`; `{{- ...}}`/`{{... -}}` trim
//! markers are accepted. Anything else is an error naming it (never output silently wrong).

use serde_json::Value;

/// A template that could not be parsed or evaluated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TemplateError {
    /// `{{` without `}}`.
    #[error("template: unclosed action starting at byte {0}")]
    Unclosed(usize),
    /// A function or construct outside the subset.
    #[error("template: {0:?} is not supported (use .Field.Path, json, index, upper or lower)")]
    Unsupported(String),
    /// A wrong number of arguments.
    #[error("template: {0}")]
    Arity(String),
}

/// Renders `template` against `value`.
pub(crate) fn render(template: &str, value: &Value) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or(TemplateError::Unclosed(offset + start))?;
        let mut action = after[..end].trim();
        if let Some(a) = action.strip_prefix('-') {
            text = text.trim_end();
            action = a.trim();
        }
        let trim_after = action.ends_with('-');
        if let Some(a) = action.strip_suffix('-') {
            action = a.trim();
        }
        out.push_str(text);
        out.push_str(&evaluate(action, value)?);
        let consumed = start + 2 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
        if trim_after {
            let trimmed = rest.trim_start();
            offset += rest.len() - trimmed.len();
            rest = trimmed;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn evaluate(action: &str, root: &Value) -> Result<String, TemplateError> {
    let words = split_words(action)?;
    let Some((first, args)) = words.split_first() else {
        return Err(TemplateError::Unsupported(action.to_owned()));
    };
    match first.as_str() {
        "json" => {
            let [arg] = args else {
                return Err(TemplateError::Arity("json takes one argument".into()));
            };
            let v = operand(arg, root)?;
            serde_json::to_string(&v).map_err(|e| TemplateError::Unsupported(e.to_string()))
        }
        "index" => {
            let [target, keys @ ..] = args else {
                return Err(TemplateError::Arity("index takes a value and keys".into()));
            };
            if keys.is_empty() {
                return Err(TemplateError::Arity("index takes a value and keys".into()));
            }
            let mut v = operand(target, root)?;
            for k in keys {
                let key = unquote(k).unwrap_or(k.as_str());
                v = match (&v, key.parse::<usize>()) {
                    (Value::Array(a), Ok(i)) => a.get(i).cloned().unwrap_or(Value::Null),
                    (Value::Object(o), _) => o.get(key).cloned().unwrap_or(Value::Null),
                    _ => Value::Null,
                };
            }
            Ok(plain(&v))
        }
        "upper" | "lower" => {
            let [arg] = args else {
                return Err(TemplateError::Arity(format!("{first} takes one argument")));
            };
            let s = plain(&operand(arg, root)?);
            Ok(if first == "upper" {
                s.to_uppercase()
            } else {
                s.to_lowercase()
            })
        }
        _ if first.starts_with('.') && args.is_empty() => Ok(plain(&operand(first, root)?)),
        _ => Err(TemplateError::Unsupported(action.to_owned())),
    }
}

/// A field path (`.A.B`), or a quoted string.
fn operand(word: &str, root: &Value) -> Result<Value, TemplateError> {
    if let Some(s) = unquote(word) {
        return Ok(Value::String(s.to_owned()));
    }
    let Some(path) = word.strip_prefix('.') else {
        return Err(TemplateError::Unsupported(word.to_owned()));
    };
    let mut v = root;
    for field in path.split('.').filter(|f| !f.is_empty()) {
        v = match v {
            Value::Object(o) => lookup(o, field).unwrap_or(&Value::Null),
            _ => &Value::Null,
        };
    }
    Ok(v.clone())
}

/// A key by exact name, then Docker's CamelCase as our snake_case, then case-insensitively.
fn lookup<'a>(o: &'a serde_json::Map<String, Value>, field: &str) -> Option<&'a Value> {
    if let Some(v) = o.get(field) {
        return Some(v);
    }
    let snake = snake_case(field);
    let alias = match snake.as_str() {
        "config" => "spec",
        other => other,
    };
    o.get(alias).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(field))
            .map(|(_, v)| v)
    })
}

fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// How Go prints a value with `{{.X}}`: strings bare, null as `<no value>`, the rest as JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        other => other.to_string(),
    }
}

fn unquote(word: &str) -> Option<&str> {
    word.strip_prefix('"')?.strip_suffix('"')
}

/// Splits an action into words, keeping quoted strings whole.
fn split_words(action: &str) -> Result<Vec<String>, TemplateError> {
    let mut words = Vec::new();
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '"' {
            w.push(chars.next().unwrap_or('"'));
            loop {
                match chars.next() {
                    Some('"') => {
                        w.push('"');
                        break;
                    }
                    Some(ch) => w.push(ch),
                    None => return Err(TemplateError::Unsupported(action.to_owned())),
                }
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                w.push(ch);
                chars.next();
            }
        }
        if w == "|" || w.contains('(') || w.contains(":=") {
            return Err(TemplateError::Unsupported(action.to_owned()));
        }
        words.push(w);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        serde_json::json!({
            "id": "abc123",
            "name": "web",
            "state": {"status": "running", "exit_code": 0},
            "spec": {"labels": {"tier": "front"}, "process": {"argv": ["sleep", "5"]}},
        })
    }

    #[test]
    fn docker_style_paths_reach_our_fields() {
        let v = sample();
        assert_eq!(render("{{.Name}}", &v).unwrap(), "web");
        assert_eq!(render("{{.State.Status}}", &v).unwrap(), "running");
        assert_eq!(render("{{.State.ExitCode}}", &v).unwrap(), "0");
        assert_eq!(render("{{.Config.Labels.tier}}", &v).unwrap(), "front");
        assert_eq!(
            render("{{ .Id }} is {{.state.status}}\n", &v).unwrap(),
            "abc123 is running\n"
        );
        assert_eq!(render("{{.Nope}}", &v).unwrap(), "<no value>");
    }

    #[test]
    fn functions_and_trim_markers() {
        let v = sample();
        assert_eq!(
            render("{{json .Config.Labels}}", &v).unwrap(),
            r#"{"tier":"front"}"#
        );
        assert_eq!(
            render(r#"{{index .Config.Labels "tier"}}"#, &v).unwrap(),
            "front"
        );
        assert_eq!(render("{{index .Spec.Process.Argv 1}}", &v).unwrap(), "5");
        assert_eq!(render("{{upper .Name}}", &v).unwrap(), "WEB");
        assert_eq!(render("a  {{- .Name -}}  b", &v).unwrap(), "awebb");
    }

    #[test]
    fn what_is_outside_the_subset_is_an_error() {
        let v = sample();
        assert!(matches!(
            render("{{.Name", &v),
            Err(TemplateError::Unclosed(0))
        ));
        assert!(matches!(
            render("{{range .X}}{{end}}", &v),
            Err(TemplateError::Unsupported(_))
        ));
        assert!(matches!(
            render("{{.Name | upper}}", &v),
            Err(TemplateError::Unsupported(_))
        ));
        assert!(matches!(
            render("{{json}}", &v),
            Err(TemplateError::Arity(_))
        ));
    }
}
