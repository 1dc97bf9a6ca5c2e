//! Dockerfile syntax: parser directives, comments, line continuations, instructions with their
//! `--flags`, and the JSON (exec) form. Meaning (variables, stages) is [`crate::plan`]'s job.

use std::collections::BTreeMap;

/// A Dockerfile could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// An instruction outside the supported subset.
    #[error("line {line}: {keyword} is not supported by a3s-box build")]
    Unsupported {
        /// 1-based line.
        line: usize,
        /// The instruction as written.
        keyword: String,
    },
    /// A flag the instruction does not take here.
    #[error("line {line}: {keyword} does not support the flag --{flag}")]
    UnsupportedFlag {
        /// 1-based line.
        line: usize,
        /// The instruction.
        keyword: String,
        /// The flag.
        flag: String,
    },
    /// Malformed arguments.
    #[error("line {line}: {keyword}: {message}")]
    Bad {
        /// 1-based line.
        line: usize,
        /// The instruction.
        keyword: String,
        /// What is wrong.
        message: String,
    },
    /// No FROM before the first instruction that needs a stage.
    #[error("line {line}: {keyword} before the first FROM (only ARG may come first)")]
    NoFrom {
        /// 1-based line.
        line: usize,
        /// The instruction.
        keyword: String,
    },
    /// Nothing to build.
    #[error("the Dockerfile has no FROM instruction")]
    Empty,
}

/// The instructions `a3s-box build` supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyword {
    /// `FROM`
    From,
    /// `RUN`
    Run,
    /// `COPY`
    Copy,
    /// `ADD`
    Add,
    /// `ENV`
    Env,
    /// `ARG`
    Arg,
    /// `WORKDIR`
    Workdir,
    /// `USER`
    User,
    /// `EXPOSE`
    Expose,
    /// `LABEL`
    Label,
    /// `ENTRYPOINT`
    Entrypoint,
    /// `CMD`
    Cmd,
    /// `VOLUME`
    Volume,
    /// `HEALTHCHECK`
    Healthcheck,
    /// `STOPSIGNAL`
    Stopsignal,
    /// `SHELL`
    Shell,
}

impl Keyword {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_uppercase().as_str() {
            "FROM" => Self::From,
            "RUN" => Self::Run,
            "COPY" => Self::Copy,
            "ADD" => Self::Add,
            "ENV" => Self::Env,
            "ARG" => Self::Arg,
            "WORKDIR" => Self::Workdir,
            "USER" => Self::User,
            "EXPOSE" => Self::Expose,
            "LABEL" => Self::Label,
            "ENTRYPOINT" => Self::Entrypoint,
            "CMD" => Self::Cmd,
            "VOLUME" => Self::Volume,
            "HEALTHCHECK" => Self::Healthcheck,
            "STOPSIGNAL" => Self::Stopsignal,
            "SHELL" => Self::Shell,
            _ => return None,
        })
    }

    /// The flags it accepts.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Self::From => &["platform"],
            Self::Copy => &["from", "chown", "chmod"],
            Self::Add => &["chown", "chmod", "checksum"],
            Self::Healthcheck => &[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ],
            _ => &[],
        }
    }

    /// Its name in capitals.
    pub fn name(self) -> &'static str {
        match self {
            Self::From => "FROM",
            Self::Run => "RUN",
            Self::Copy => "COPY",
            Self::Add => "ADD",
            Self::Env => "ENV",
            Self::Arg => "ARG",
            Self::Workdir => "WORKDIR",
            Self::User => "USER",
            Self::Expose => "EXPOSE",
            Self::Label => "LABEL",
            Self::Entrypoint => "ENTRYPOINT",
            Self::Cmd => "CMD",
            Self::Volume => "VOLUME",
            Self::Healthcheck => "HEALTHCHECK",
            Self::Stopsignal => "STOPSIGNAL",
            Self::Shell => "SHELL",
        }
    }
}

/// One instruction as written (continuations joined, flags split off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line of its first line.
    pub line: usize,
    /// What it is.
    pub keyword: Keyword,
    /// `--name=value` flags, in order.
    pub flags: BTreeMap<String, String>,
    /// The rest of the line.
    pub args: String,
    /// The JSON (exec) form, when the arguments are a JSON array of strings.
    pub json: Option<Vec<String>>,
}

impl Instruction {
    /// The instruction as `docker history` shows it (`RUN apt-get ...`).
    pub fn text(&self) -> String {
        let mut s = self.keyword.name().to_owned();
        for (k, v) in &self.flags {
            s.push_str(&format!(" --{k}={v}"));
        }
        s.push(' ');
        s.push_str(&self.args);
        s
    }

    /// A parse error about this instruction.
    pub fn bad(&self, message: impl Into<String>) -> ParseError {
        ParseError::Bad {
            line: self.line,
            keyword: self.keyword.name().into(),
            message: message.into(),
        }
    }
}

/// Parses a Dockerfile. Supported parser directive: `# escape=` (`\` or `` ` ``); other
/// directives are comments, as in Docker.
///
/// # Errors
/// [`ParseError`] naming the instruction and line.
pub fn parse(text: &str) -> Result<Vec<Instruction>, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    // Directives: `# key=value` lines at the very top.
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        let Some(rest) = t.strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        if k.trim().eq_ignore_ascii_case("escape") {
            escape = match v.trim() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(ParseError::Bad {
                        line: i + 1,
                        keyword: "escape".into(),
                        message: format!("invalid escape character {other:?} (use \\ or `)"),
                    })
                }
            };
        }
        i += 1;
    }
    let mut out = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i].trim_start();
        i += 1;
        if first.is_empty() || first.starts_with('#') {
            continue;
        }
        let mut joined = String::new();
        let mut cur = first.trim_end().to_owned();
        while cur.ends_with(escape) && !cur.ends_with(&format!("{escape}{escape}")) {
            cur.pop();
            joined.push_str(&cur);
            // Comment and empty lines inside a continuation are dropped, as Docker does.
            loop {
                if i >= lines.len() {
                    cur = String::new();
                    break;
                }
                let next = lines[i].trim_start();
                i += 1;
                if next.is_empty() || next.starts_with('#') {
                    continue;
                }
                cur = next.trim_end().to_owned();
                break;
            }
        }
        joined.push_str(&cur);
        out.push(instruction(start + 1, &joined)?);
    }
    Ok(out)
}

fn instruction(line: usize, text: &str) -> Result<Instruction, ParseError> {
    let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let keyword = Keyword::parse(word).ok_or_else(|| ParseError::Unsupported {
        line,
        keyword: word.to_ascii_uppercase(),
    })?;
    let mut rest = rest.trim_start();
    let mut flags = BTreeMap::new();
    while let Some(flag) = rest.strip_prefix("--") {
        let (f, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        let (name, value) = f.split_once('=').unwrap_or((f, ""));
        if !keyword.flags().contains(&name) {
            return Err(ParseError::UnsupportedFlag {
                line,
                keyword: keyword.name().into(),
                flag: name.into(),
            });
        }
        flags.insert(name.to_owned(), value.to_owned());
        rest = after.trim_start();
    }
    let args = rest.trim().to_owned();
    let json = if args.starts_with('[') {
        serde_json::from_str::<Vec<String>>(&args).ok()
    } else {
        None
    };
    Ok(Instruction {
        line,
        keyword,
        flags,
        args,
        json,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn continuations_comments_and_flags() {
        let df = "# escape=\\\nFROM --platform=linux/amd64 img AS build\n# c\nRUN a \\\n  # inner comment\n\n  && b\ncopy --from=build /x /y\nCMD [\"a\", \"b\"]\n";
        let p = parse(df).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].flags["platform"], "linux/amd64");
        assert_eq!(p[0].args, "img AS build");
        assert_eq!(p[1].line, 4);
        assert_eq!(p[1].args, "a && b");
        assert_eq!(p[2].keyword, Keyword::Copy);
        assert_eq!(p[2].flags["from"], "build");
        assert_eq!(p[3].json, Some(vec!["a".to_owned(), "b".to_owned()]));
    }

    #[test]
    fn backtick_escape_directive() {
        let p = parse("# escape=`\nFROM x\nRUN a `\n b\n").unwrap();
        assert_eq!(p[1].args, "a b");
    }

    #[test]
    fn unknown_instructions_and_flags_name_the_line() {
        assert_eq!(
            parse("FROM x\nONBUILD RUN x\n").unwrap_err(),
            ParseError::Unsupported {
                line: 2,
                keyword: "ONBUILD".into()
            }
        );
        assert_eq!(
            parse("FROM x\n\nRUN --mount=type=cache,target=/x make\n").unwrap_err(),
            ParseError::UnsupportedFlag {
                line: 3,
                keyword: "RUN".into(),
                flag: "mount".into()
            }
        );
    }
}
