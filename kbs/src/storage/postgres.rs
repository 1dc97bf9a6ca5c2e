//! PostgreSQL storage (`--db postgres://…`): replicas pointed at one database share
//! resources, policies, reference values and the token key.

use std::sync::Mutex;

use postgres::{Client, NoTls};

use super::{Namespace, Storage, StorageError};

/// PostgreSQL-backed [`Storage`].
pub struct PostgresStorage {
    client: Mutex<Client>,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresStorage")
    }
}

impl PostgresStorage {
    /// Connects to `url` (`postgres://user@host:port/db`) and creates the table if needed.
    /// Call from a blocking context (not inside an async task).
    ///
    /// # Errors
    /// [`StorageError::Postgres`] when the server cannot be reached or refuses.
    pub fn connect(url: &str) -> Result<Self, StorageError> {
        let mut client = Client::connect(url, NoTls)?;
        client.batch_execute(
            "CREATE TABLE IF NOT EXISTS a3s_kbs_kv (ns TEXT NOT NULL, key TEXT NOT NULL, \
             value BYTEA NOT NULL, PRIMARY KEY (ns, key))",
        )?;
        Ok(Self {
            client: Mutex::new(client),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StorageError> {
        let mut c = self.client.lock().map_err(|_| StorageError::Poisoned)?;
        Ok(f(&mut c)?)
    }
}

impl Storage for PostgresStorage {
    fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT value FROM a3s_kbs_kv WHERE ns = $1 AND key = $2",
                &[&ns.as_str(), &key],
            )?
            .map(|r| r.get(0)))
        })
    }

    fn put(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO a3s_kbs_kv (ns, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value",
                &[&ns.as_str(), &key, &value],
            )
            .map(|_| ())
        })
    }

    fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StorageError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM a3s_kbs_kv WHERE ns = $1 AND key = $2",
                &[&ns.as_str(), &key],
            )
            .map(|n| n > 0)
        })
    }

    fn list(&self, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.with(|c| {
            Ok(c.query(
                "SELECT key, value FROM a3s_kbs_kv WHERE ns = $1 ORDER BY key",
                &[&ns.as_str()],
            )?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
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
                "INSERT INTO a3s_kbs_kv (ns, key, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&ns.as_str(), &key, &value],
            )?;
            Ok(c.query_one(
                "SELECT value FROM a3s_kbs_kv WHERE ns = $1 AND key = $2",
                &[&ns.as_str(), &key],
            )?
            .get(0))
        })
    }
}
