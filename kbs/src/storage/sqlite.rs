//! Embedded SQLite storage (`A3S_HOME/kbs/kbs.db` by default), WAL mode.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::{refuse_shared, Namespace, Storage, StorageError};

/// Creates the database file 0600 when it is new (SQLite gives its `-wal` and `-shm` files the
/// database's mode), and refuses an existing one, or its `-wal`/`-shm`, that other local users
/// can read.
fn create_private(path: &Path) -> Result<(), StorageError> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(StorageError::Dir {
                path: path.display().to_string(),
                source,
            })
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        refuse_shared(Path::new(&file), "KBS database")?;
    }
    Ok(())
}

/// SQLite-backed [`Storage`].
#[derive(Debug)]
pub struct SqliteStorage {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path`, with its directory.
    ///
    /// # Errors
    /// [`StorageError`] when the directory or database cannot be created.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| StorageError::Dir {
                    path: dir.display().to_string(),
                    source,
                })?;
        }
        create_private(path)?;
        let err = |source| StorageError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL, \
             value BLOB NOT NULL, PRIMARY KEY (ns, key))",
        )
        .map_err(err)?;
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A database that lives in memory only and ends with this value (an ephemeral broker
    /// whose secrets must never touch the disk).
    ///
    /// # Errors
    /// [`StorageError`] when SQLite cannot create it.
    pub fn in_memory() -> Result<Self, StorageError> {
        let err = |source| StorageError::Sqlite {
            path: ":memory:".into(),
            source,
        };
        let conn = Connection::open_in_memory().map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL, \
             value BLOB NOT NULL, PRIMARY KEY (ns, key))",
        )
        .map_err(err)?;
        Ok(Self {
            path: PathBuf::from(":memory:"),
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        let conn = self.conn.lock().map_err(|_| StorageError::Poisoned)?;
        f(&conn).map_err(|source| StorageError::Sqlite {
            path: self.path.display().to_string(),
            source,
        })
    }
}

impl Storage for SqliteStorage {
    fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.with(|c| {
            c.query_row(
                "SELECT value FROM kv WHERE ns = ?1 AND key = ?2",
                params![ns.as_str(), key],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn put(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO kv (ns, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value",
                params![ns.as_str(), key, value],
            )
            .map(|_| ())
        })
    }

    fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StorageError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM kv WHERE ns = ?1 AND key = ?2",
                params![ns.as_str(), key],
            )
            .map(|n| n > 0)
        })
    }

    fn list(&self, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT key, value FROM kv WHERE ns = ?1 ORDER BY key")?;
            let rows = st.query_map(params![ns.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    fn put_if_absent(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, StorageError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO kv (ns, key, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![ns.as_str(), key, value],
            )?;
            c.query_row(
                "SELECT value FROM kv WHERE ns = ?1 AND key = ?2",
                params![ns.as_str(), key],
                |r| r.get(0),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_behaves_like_a_storage() {
        crate::storage::tests::exercise(&SqliteStorage::in_memory().unwrap());
    }

    #[test]
    fn sqlite_behaves_like_a_storage_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kbs/kbs.db");
        {
            let s = SqliteStorage::open(&path).unwrap();
            crate::storage::tests::exercise(&s);
        }
        let s = SqliteStorage::open(&path).unwrap();
        assert_eq!(
            s.get(Namespace::Key, "k").unwrap().as_deref(),
            Some(&b"first"[..])
        );
    }
}
