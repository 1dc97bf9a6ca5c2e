//! `--format '{{...}}'`: the part of Go's text/template that Docker users write against
//! `inspect` output, evaluated over our JSON.
//!
//! Supported: literal text; `{{.A.B}}` (field paths; Docker's CamelCase names match our
//! snake_case keys, `.Config` is our `spec`); `{{json .A}}`; `{{index .A "key"}}` (also with a
//! number for arrays); `{{upper .A}}`, `{{lower .A}}`; `{{.}}`; `{{- ...}}`/`{{... -}}` trim
//! markers are accepted. `{{.X}}` prints as Go prints it: a list as `[a b]`, an object as
//! `map[k:v]`. Anything else is an error naming it (never output silently wrong).

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
    render_with_zeros(template, value, &Value::Null)
}

/// Renders `template` against `value`, where a field path missing from `value` (or null there)
/// reads its Go zero value from `zeros`, a skeleton of the same shape (`""` for a string, `[]`
/// for a list, `{}` for a map). A Go template reads a struct field whether or not its JSON
/// omits it (`omitempty`): `{{.X}}` prints `""`, `[]` or `map[]`, and `{{json .X}}` prints
/// `""` or `null`, not `<no value>`.
pub(crate) fn render_with_zeros(
    template: &str,
    value: &Value,
    zeros: &Value,
) -> Result<String, TemplateError> {
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
        out.push_str(&evaluate(action, value, zeros)?);
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

fn evaluate(action: &str, root: &Value, zeros: &Value) -> Result<String, TemplateError> {
    let words = split_words(action)?;
    let Some((first, args)) = words.split_first() else {
        return Err(TemplateError::Unsupported(action.to_owned()));
    };
    match first.as_str() {
        "json" => {
            let [arg] = args else {
                return Err(TemplateError::Arity("json takes one argument".into()));
            };
            let v = match operand(arg, root, zeros)? {
                // Go's JSON of a nil list or map.
                (Value::Array(_) | Value::Object(_), true) => Value::Null,
                (v, _) => v,
            };
            serde_json::to_string(&v).map_err(|e| TemplateError::Unsupported(e.to_string()))
        }
        "index" => {
            let [target, keys @ ..] = args else {
                return Err(TemplateError::Arity("index takes a value and keys".into()));
            };
            if keys.is_empty() {
                return Err(TemplateError::Arity("index takes a value and keys".into()));
            }
            let (mut v, _) = operand(target, root, zeros)?;
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
            let s = plain(&operand(arg, root, zeros)?.0);
            Ok(if first == "upper" {
                s.to_uppercase()
            } else {
                s.to_lowercase()
            })
        }
        _ if first.starts_with('.') && args.is_empty() => {
            Ok(plain(&operand(first, root, zeros)?.0))
        }
        _ => Err(TemplateError::Unsupported(action.to_owned())),
    }
}

/// A field path (`.A.B`), or a quoted string; `true` when the value is the path's zero value
/// from `zeros` (the path is missing or null in `root`).
fn operand(word: &str, root: &Value, zeros: &Value) -> Result<(Value, bool), TemplateError> {
    if let Some(s) = unquote(word) {
        return Ok((Value::String(s.to_owned()), false));
    }
    let Some(path) = word.strip_prefix('.') else {
        return Err(TemplateError::Unsupported(word.to_owned()));
    };
    let mut v = root;
    let mut z = zeros;
    for field in path.split('.').filter(|f| !f.is_empty()) {
        v = match v {
            Value::Object(o) => lookup(o, field).unwrap_or(&Value::Null),
            _ => &Value::Null,
        };
        z = match z {
            Value::Object(o) => lookup(o, field).unwrap_or(&Value::Null),
            _ => &Value::Null,
        };
    }
    Ok(match (v, z) {
        (Value::Null, zero) if !zero.is_null() => (zero.clone(), true),
        (v, _) => (v.clone(), false),
    })
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

/// How Go prints a value with `{{.X}}`: strings bare, null as `<no value>`, lists as `[a b]`
/// and objects as maps, `map[k:v]` (see [`go_value`]).
fn plain(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        other => go_value(other, true),
    }
}

/// Go's `fmt` `%v` of the value a JSON value came from: `[a b]` for a list, `map[k:v]` for an
/// object (keys sorted, as Go prints maps), `<nil>` for a null inside them, and `{}` for an
/// empty object inside them (Docker's `struct{}` set members, e.g. `map[80/tcp:{}]` for
/// `ExposedPorts`).
fn go_value(v: &Value, top: bool) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(|x| go_value(x, false)).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(o) if o.is_empty() && !top => "{}".into(),
        Value::Object(o) => {
            let mut entries: Vec<(&String, &Value)> = o.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let items: Vec<String> = entries
                .into_iter()
                .map(|(k, x)| format!("{k}:{}", go_value(x, false)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
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
    fn lists_and_maps_print_as_go_prints_them() {
        let v = serde_json::json!({
            "Env": ["A=1", "B=2"],
            "Empty": [],
            "Ports": {"80/tcp": {}, "53/udp": {}},
            "Labels": {"b": "2", "a": "1"},
            "NoLabels": {},
            "Mixed": [1, true, null, ["x"]],
        });
        assert_eq!(render("{{.Env}}", &v).unwrap(), "[A=1 B=2]");
        assert_eq!(render("{{.Empty}}", &v).unwrap(), "[]");
        assert_eq!(
            render("{{.Ports}}", &v).unwrap(),
            "map[53/udp:{} 80/tcp:{}]"
        );
        assert_eq!(render("{{.Labels}}", &v).unwrap(), "map[a:1 b:2]");
        assert_eq!(render("{{.NoLabels}}", &v).unwrap(), "map[]");
        assert_eq!(render("{{.Mixed}}", &v).unwrap(), "[1 true <nil> [x]]");
        // json still prints JSON.
        assert_eq!(render("{{json .Env}}", &v).unwrap(), r#"["A=1","B=2"]"#);
    }

    #[test]
    fn omitted_fields_read_as_go_zero_values() {
        let v = serde_json::json!({"Config": {"Cmd": ["sh"]}, "Id": "x"});
        let zeros = serde_json::json!({
            "Parent": "",
            "Config": {"User": "", "Entrypoint": [], "Labels": {}, "Cmd": []},
        });
        let r = |t: &str| render_with_zeros(t, &v, &zeros).unwrap();
        assert_eq!(r("{{.Config.User}}"), "");
        assert_eq!(r("{{json .Config.User}}"), r#""""#);
        assert_eq!(r("{{.Config.Entrypoint}}"), "[]");
        assert_eq!(r("{{json .Config.Entrypoint}}"), "null");
        assert_eq!(r("{{.Config.Labels}}"), "map[]");
        assert_eq!(r("{{json .Config.Labels}}"), "null");
        assert_eq!(r("{{.Parent}}"), "");
        // Present values win; what neither has is still `<no value>`.
        assert_eq!(r("{{.Config.Cmd}}"), "[sh]");
        assert_eq!(r("{{.Id}}"), "x");
        assert_eq!(r("{{.Nope}}"), "<no value>");
        assert_eq!(r("{{json .Config}}"), r#"{"Cmd":["sh"]}"#);
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
