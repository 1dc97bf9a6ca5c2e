//! Docker's variable substitution and word splitting (its shell lexer's subset): `$VAR`,
//! `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}`,
//! `${VAR?msg}`; single quotes are literal, double quotes group and still expand, the escape
//! character makes the next character literal. Quotes are removed.

use std::collections::BTreeMap;

/// The variables in scope: name → value.
pub type Vars = BTreeMap<String, String>;

/// Expands one word (quote removal included).
///
/// # Errors
/// A `${VAR:?msg}` whose variable is unset or empty, or an unterminated `${` or quote.
pub fn expand(word: &str, vars: &Vars, escape: char) -> Result<String, String> {
    Ok(words(word, vars, escape, false)?.join(" "))
}

/// Splits `text` into words at unquoted whitespace, expanding each.
///
/// # Errors
/// As [`expand`].
pub fn split(text: &str, vars: &Vars, escape: char) -> Result<Vec<String>, String> {
    words(text, vars, escape, true)
}

fn words(text: &str, vars: &Vars, escape: char, split: bool) -> Result<Vec<String>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut started = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c == escape => {
                i += 1;
                if let Some(&n) = chars.get(i) {
                    cur.push(n);
                }
                started = true;
            }
            '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    cur.push(chars[i]);
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated single quote".into());
                }
                started = true;
            }
            '"' => {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated double quote".into()),
                        Some('"') => break,
                        Some(&e) if e == escape => {
                            // Inside double quotes only `"`, `$` and the escape are escaped.
                            match chars.get(i + 1) {
                                Some(&n) if n == '"' || n == '$' || n == escape => {
                                    cur.push(n);
                                    i += 2;
                                }
                                _ => {
                                    cur.push(e);
                                    i += 1;
                                }
                            }
                        }
                        Some('$') => {
                            let (v, next) = variable(&chars, i, vars, escape)?;
                            cur.push_str(&v);
                            i = next;
                        }
                        Some(&ch) => {
                            cur.push(ch);
                            i += 1;
                        }
                    }
                }
                started = true;
            }
            '$' => {
                let (v, next) = variable(&chars, i, vars, escape)?;
                cur.push_str(&v);
                started = true;
                i = next;
                continue;
            }
            c if split && c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
        i += 1;
    }
    if started || !split {
        out.push(cur);
    }
    Ok(out)
}

/// Expands the variable reference at `chars[i] == '$'`; returns its value and the index after
/// it.
fn variable(
    chars: &[char],
    i: usize,
    vars: &Vars,
    escape: char,
) -> Result<(String, usize), String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.get(i + 1) {
        Some('{') => {
            let mut j = i + 2;
            let start = j;
            while j < chars.len() && name_char(chars[j]) {
                j += 1;
            }
            let name: String = chars[start..j].iter().collect();
            // The rest up to the matching `}` (nested `${...}` allowed in the word).
            let mut depth = 1;
            let mut k = j;
            while k < chars.len() {
                match chars[k] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            if k >= chars.len() {
                return Err(format!("missing }} in ${{{name}"));
            }
            let modifier: String = chars[j..k].iter().collect();
            let value = vars.get(&name);
            let set = value.is_some();
            let non_empty = value.is_some_and(|v| !v.is_empty());
            let word = |w: &str| expand(w, vars, escape);
            let result = if modifier.is_empty() {
                value.cloned().unwrap_or_default()
            } else if let Some(w) = modifier.strip_prefix(":-") {
                if non_empty {
                    value.cloned().unwrap_or_default()
                } else {
                    word(w)?
                }
            } else if let Some(w) = modifier.strip_prefix(":+") {
                if non_empty {
                    word(w)?
                } else {
                    String::new()
                }
            } else if let Some(w) = modifier.strip_prefix(":?") {
                if non_empty {
                    value.cloned().unwrap_or_default()
                } else {
                    return Err(format!("{name}: {}", word(w)?));
                }
            } else if let Some(w) = modifier.strip_prefix('-') {
                if set {
                    value.cloned().unwrap_or_default()
                } else {
                    word(w)?
                }
            } else if let Some(w) = modifier.strip_prefix('+') {
                if set {
                    word(w)?
                } else {
                    String::new()
                }
            } else if let Some(w) = modifier.strip_prefix('?') {
                if set {
                    value.cloned().unwrap_or_default()
                } else {
                    return Err(format!("{name}: {}", word(w)?));
                }
            } else {
                return Err(format!("unsupported modifier in ${{{name}{modifier}}}"));
            };
            Ok((result, k + 1))
        }
        Some(&c) if name_char(c) => {
            let mut j = i + 1;
            while j < chars.len() && name_char(chars[j]) {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            Ok((vars.get(&name).cloned().unwrap_or_default(), j))
        }
        _ => Ok(("$".into(), i + 1)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn vars() -> Vars {
        [("A", "a"), ("E", ""), ("P", "/p q")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn docker_modifiers() {
        let v = vars();
        let x = |s: &str| expand(s, &v, '\\').unwrap();
        assert_eq!(x("$A"), "a");
        assert_eq!(x("${A}b"), "ab");
        assert_eq!(x("${U:-d}"), "d");
        assert_eq!(x("${E:-d}"), "d");
        assert_eq!(x("${E-d}"), "");
        assert_eq!(x("${U-d}"), "d");
        assert_eq!(x("${A:+set}"), "set");
        assert_eq!(x("${E:+set}"), "");
        assert_eq!(x("${E+set}"), "set");
        assert_eq!(x("${U:-${A}x}"), "ax");
        assert_eq!(x("'$A'"), "$A");
        assert_eq!(x("\"$A b\""), "a b");
        assert_eq!(x("\\$A"), "$A");
        assert_eq!(x("$"), "$");
        assert!(expand("${U:?needed}", &v, '\\')
            .unwrap_err()
            .contains("needed"));
    }

    #[test]
    fn splitting_keeps_quoted_spaces() {
        let v = vars();
        assert_eq!(
            split("a \"b c\" $P 'd e'", &v, '\\').unwrap(),
            ["a", "b c", "/p q", "d e"]
        );
    }
}
