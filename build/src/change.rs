//! `commit --change`: one Dockerfile instruction applied to an image config, exactly as the
//! same instruction in a Dockerfile changes it (the builder's own code does it).

use serde_json::Value;

use crate::builder::{apply_config_instruction, IMPORT_CHANGES};
use crate::dockerfile::{self, Instruction, ParseError};

/// One parsed `--change` instruction.
#[derive(Clone, Debug)]
pub struct ConfigChange(Instruction);

/// A `--change` value that is not one config instruction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// Not Dockerfile syntax.
    #[error("--change {text:?}: {source}")]
    Parse {
        /// The value.
        text: String,
        /// Why.
        #[source]
        source: ParseError,
    },
    /// Not exactly one instruction, or one that does not change the config.
    #[error("--change {0:?}: expected one of CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR")]
    NotConfig(String),
    /// The instruction's arguments are wrong.
    #[error("--change {text:?}: {message}")]
    Invalid {
        /// The value.
        text: String,
        /// Why.
        message: String,
    },
}

impl ConfigChange {
    /// Parses `text` (e.g. `ENV DEBUG=1`, `CMD ["app", "--serve"]`).
    ///
    /// # Errors
    /// [`ChangeError`].
    pub fn parse(text: &str) -> Result<Self, ChangeError> {
        let mut all = dockerfile::parse(text).map_err(|source| ChangeError::Parse {
            text: text.to_owned(),
            source,
        })?;
        match (all.pop(), all.is_empty()) {
            (Some(ins), true) if IMPORT_CHANGES.contains(&ins.keyword) => Ok(Self(ins)),
            _ => Err(ChangeError::NotConfig(text.to_owned())),
        }
    }

    /// Applies the instruction to image config document `config`.
    ///
    /// # Errors
    /// The instruction's arguments are wrong (a message naming what).
    pub fn apply(&self, config: &mut Value) -> Result<(), String> {
        apply_config_instruction(config, &self.0)
            .map(drop)
            .map_err(|e| {
                ChangeError::Invalid {
                    text: self.0.text(),
                    message: e.to_string(),
                }
                .to_string()
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn changes_edit_the_config_as_dockerfile_instructions_do() {
        let mut config = json!({"config": {"Env": ["PATH=/bin", "X=old"], "Cmd": ["sh"]}});
        for c in [
            "ENV X=new Y=2",
            r#"CMD ["app", "--serve"]"#,
            "WORKDIR /srv",
            "EXPOSE 8080",
            "LABEL team=infra",
            "USER 1000",
        ] {
            ConfigChange::parse(c).unwrap().apply(&mut config).unwrap();
        }
        let rc = &config["config"];
        assert_eq!(rc["Env"], json!(["PATH=/bin", "X=new", "Y=2"]));
        assert_eq!(rc["Cmd"], json!(["app", "--serve"]));
        assert_eq!(rc["WorkingDir"], json!("/srv"));
        assert_eq!(rc["ExposedPorts"], json!({"8080/tcp": {}}));
        assert_eq!(rc["Labels"], json!({"team": "infra"}));
        assert_eq!(rc["User"], json!("1000"));
        // Shell form goes through /bin/sh -c, as in a Dockerfile.
        ConfigChange::parse("ENTRYPOINT run me")
            .unwrap()
            .apply(&mut config)
            .unwrap();
        assert_eq!(
            config["config"]["Entrypoint"],
            json!(["/bin/sh", "-c", "run me"])
        );
    }

    #[test]
    fn instructions_that_are_not_config_are_refused() {
        for bad in [
            "RUN rm -rf /",
            "FROM scratch",
            "COPY a b",
            "",
            "ENV A=1\nENV B=2",
        ] {
            assert!(
                matches!(
                    ConfigChange::parse(bad),
                    Err(ChangeError::NotConfig(_) | ChangeError::Parse { .. })
                ),
                "{bad:?}"
            );
        }
        let bad_port = ConfigChange::parse("EXPOSE http").unwrap();
        let err = bad_port.apply(&mut json!({})).unwrap_err();
        assert!(err.contains("invalid port"), "{err}");
    }
}
