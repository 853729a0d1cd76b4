//! Registration entries: the mapping from attested workloads to SPIFFE IDs (AIMS PR-4).
//!
//! An entry names a SPIFFE ID, the parent (the node agent) under which it may be issued, and the
//! selectors a workload must all present (AND) to receive it, as SPIRE's entries do.

use std::fmt;
use std::str::FromStr;

use aims_core::SpiffeId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sqlx::Row as _;

use crate::{Store, StoreError, now_unix};

/// Longest selector AIMS accepts.
const MAX_SELECTOR_LEN: usize = 1024;
/// Most selectors per entry.
const MAX_SELECTORS: usize = 64;
/// Most DNS names per entry.
const MAX_DNS_NAMES: usize = 64;

/// Why a selector string is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {0:?}: expected type:value, e.g. unix:uid:1000")]
pub struct SelectorError(pub String);

/// A selector: `type:value`, e.g. `unix:uid:1000` (type `unix`, value `uid:1000`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    /// The attestor type (`unix`, `k8s`, `tpm`, …).
    pub kind: String,
    /// The value, interpreted by the attestor.
    pub value: String,
}

impl Selector {
    /// A selector from its parts.
    pub fn new(kind: &str, value: &str) -> Result<Self, SelectorError> {
        format!("{kind}:{value}").parse()
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SelectorError(s.chars().take(64).collect());
        if s.len() > MAX_SELECTOR_LEN {
            return Err(err());
        }
        let (kind, value) = s.split_once(':').ok_or_else(err)?;
        let kind_ok = !kind.is_empty()
            && kind
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
        let value_ok = !value.is_empty() && !value.chars().any(char::is_control);
        if kind_ok && value_ok {
            Ok(Self {
                kind: kind.to_owned(),
                value: value.to_owned(),
            })
        } else {
            Err(err())
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A registration entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationEntry {
    /// Entry identifier (a UUID).
    pub id: String,
    /// The identity issued to matching workloads.
    pub spiffe_id: SpiffeId,
    /// The node (agent) under which the entry applies.
    pub parent_id: SpiffeId,
    /// All of these must match the workload.
    pub selectors: Vec<Selector>,
    /// X509-SVID lifetime in seconds; 0 means the server default.
    pub x509_svid_ttl: u32,
    /// JWT-SVID lifetime in seconds; 0 means the server default.
    pub jwt_svid_ttl: u32,
    /// DNS SANs for X509-SVIDs.
    pub dns_names: Vec<String>,
    /// Whether the identity may use the admin API.
    pub admin: bool,
    /// The Workload API `hint` (SPIFFE Workload API §5.3).
    pub hint: Option<String>,
    /// Disabled by remediation: no SVID is issued or renewed for it.
    #[serde(default)]
    pub disabled: bool,
    /// Incremented on every update.
    pub revision: i64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last update, Unix seconds.
    pub updated_at: i64,
}

/// A new entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewEntry {
    /// The identity to issue.
    pub spiffe_id: SpiffeId,
    /// The node under which it applies.
    pub parent_id: SpiffeId,
    /// The selectors (at least one).
    pub selectors: Vec<Selector>,
    /// X509-SVID lifetime, seconds (0: server default).
    #[serde(default)]
    pub x509_svid_ttl: u32,
    /// JWT-SVID lifetime, seconds (0: server default).
    #[serde(default)]
    pub jwt_svid_ttl: u32,
    /// DNS SANs.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Admin flag.
    #[serde(default)]
    pub admin: bool,
    /// Workload API hint.
    #[serde(default)]
    pub hint: Option<String>,
}

impl NewEntry {
    /// An entry for `spiffe_id` under `parent_id` matching `selectors`, with the server's default
    /// lifetimes and no DNS names, admin flag or hint.
    pub fn new(spiffe_id: SpiffeId, parent_id: SpiffeId, selectors: Vec<Selector>) -> Self {
        Self {
            spiffe_id,
            parent_id,
            selectors,
            x509_svid_ttl: 0,
            jwt_svid_ttl: 0,
            dns_names: Vec::new(),
            admin: false,
            hint: None,
        }
    }
}

/// Changes to an entry; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntryUpdate {
    /// New parent.
    #[serde(default)]
    pub parent_id: Option<SpiffeId>,
    /// New selectors.
    #[serde(default)]
    pub selectors: Option<Vec<Selector>>,
    /// New X509-SVID lifetime.
    #[serde(default)]
    pub x509_svid_ttl: Option<u32>,
    /// New JWT-SVID lifetime.
    #[serde(default)]
    pub jwt_svid_ttl: Option<u32>,
    /// New DNS names.
    #[serde(default)]
    pub dns_names: Option<Vec<String>>,
    /// New admin flag.
    #[serde(default)]
    pub admin: Option<bool>,
    /// Disable or enable the entry.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// New hint (`Some(None)` clears it).
    #[serde(default)]
    pub hint: Option<Option<String>>,
}

/// Which entries to list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntryFilter {
    /// Only entries with this SPIFFE ID.
    #[serde(default)]
    pub spiffe_id: Option<SpiffeId>,
    /// Only entries under this parent.
    #[serde(default)]
    pub parent_id: Option<SpiffeId>,
}

fn validate_dns(names: &[String]) -> Result<(), StoreError> {
    if names.len() > MAX_DNS_NAMES {
        return Err(StoreError::Invalid(format!(
            "more than {MAX_DNS_NAMES} DNS names"
        )));
    }
    for n in names {
        let ok = !n.is_empty()
            && n.len() <= 253
            && n.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'*')
            });
        if !ok {
            return Err(StoreError::Invalid(format!("invalid DNS name {n:?}")));
        }
    }
    Ok(())
}

fn validate_selectors(selectors: &[Selector]) -> Result<(), StoreError> {
    if selectors.is_empty() {
        return Err(StoreError::Invalid(
            "an entry needs at least one selector".into(),
        ));
    }
    if selectors.len() > MAX_SELECTORS {
        return Err(StoreError::Invalid(format!(
            "more than {MAX_SELECTORS} selectors"
        )));
    }
    Ok(())
}

fn validate_hint(hint: Option<&String>) -> Result<(), StoreError> {
    if hint.is_some_and(|h| h.len() > 1024) {
        return Err(StoreError::Invalid("hint longer than 1024 bytes".into()));
    }
    Ok(())
}

fn sorted(mut selectors: Vec<Selector>) -> Vec<Selector> {
    selectors.sort();
    selectors.dedup();
    selectors
}

fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(e.to_string()))
}

pub(crate) fn row_to_entry(row: &sqlx::any::AnyRow) -> Result<RegistrationEntry, StoreError> {
    let parse_id = |col: &str| -> Result<SpiffeId, StoreError> {
        let s: String = row.try_get(col)?;
        SpiffeId::parse(&s).map_err(|e| StoreError::Invalid(format!("stored {col}: {e}")))
    };
    let selectors: String = row.try_get("selectors")?;
    let dns: String = row.try_get("dns_names")?;
    Ok(RegistrationEntry {
        id: row.try_get("id")?,
        spiffe_id: parse_id("spiffe_id")?,
        parent_id: parse_id("parent_id")?,
        selectors: serde_json::from_str(&selectors)
            .map_err(|e| StoreError::Invalid(format!("stored selectors: {e}")))?,
        x509_svid_ttl: u32::try_from(row.try_get::<i64, _>("x509_svid_ttl")?).unwrap_or(0),
        jwt_svid_ttl: u32::try_from(row.try_get::<i64, _>("jwt_svid_ttl")?).unwrap_or(0),
        dns_names: serde_json::from_str(&dns)
            .map_err(|e| StoreError::Invalid(format!("stored dns_names: {e}")))?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        hint: row.try_get("hint")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        revision: row.try_get("revision")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The entry columns, in the order [`row_to_entry`] and the INSERT use.
macro_rules! entry_columns {
    () => {
        "id, spiffe_id, parent_id, selectors, x509_svid_ttl, jwt_svid_ttl, \
         dns_names, admin, hint, revision, created_at, updated_at, disabled"
    };
}
pub(crate) use entry_columns;

impl Store {
    /// Creates an entry. An entry with the same SPIFFE ID, parent and selectors is a conflict.
    pub async fn create_entry(&self, new: NewEntry) -> Result<RegistrationEntry, StoreError> {
        let selectors = sorted(new.selectors);
        validate_selectors(&selectors)?;
        validate_dns(&new.dns_names)?;
        validate_hint(new.hint.as_ref())?;
        let selectors_json = to_json(&selectors)?;
        let duplicate: Option<String> = sqlx::query_scalar(
            "SELECT id FROM registration_entries WHERE spiffe_id = $1 AND parent_id = $2 AND selectors = $3",
        )
        .bind(new.spiffe_id.as_str())
        .bind(new.parent_id.as_str())
        .bind(&selectors_json)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(id) = duplicate {
            return Err(StoreError::Conflict(format!(
                "an identical entry exists ({id})"
            )));
        }
        let now = now_unix();
        let entry = RegistrationEntry {
            id: uuid::Uuid::new_v4().to_string(),
            spiffe_id: new.spiffe_id,
            parent_id: new.parent_id,
            selectors,
            x509_svid_ttl: new.x509_svid_ttl,
            jwt_svid_ttl: new.jwt_svid_ttl,
            dns_names: new.dns_names,
            admin: new.admin,
            hint: new.hint,
            disabled: false,
            revision: 1,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(concat!(
            "INSERT INTO registration_entries (",
            entry_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&entry.id)
        .bind(entry.spiffe_id.as_str())
        .bind(entry.parent_id.as_str())
        .bind(&selectors_json)
        .bind(i64::from(entry.x509_svid_ttl))
        .bind(i64::from(entry.jwt_svid_ttl))
        .bind(to_json(&entry.dns_names)?)
        .bind(i64::from(entry.admin))
        .bind(entry.hint.clone())
        .bind(entry.revision)
        .bind(entry.created_at)
        .bind(entry.updated_at)
        .bind(i64::from(entry.disabled))
        .execute(&mut *tx)
        .await?;
        Self::registration_changed(&mut tx, Some(&entry.id), None).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// The entry with this id.
    pub async fn get_entry(&self, id: &str) -> Result<RegistrationEntry, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM registration_entries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("entry {id}")))?;
        row_to_entry(&row)
    }

    /// Entries matching `filter`, ordered by SPIFFE ID then id.
    pub async fn list_entries(
        &self,
        filter: &EntryFilter,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        // One statement per filter shape, each able to use its index: `($1 = '' OR col = $1)`
        // is planned as a scan of every entry (PostgreSQL's generic plan, SQLite always), and
        // every agent's sync re-reads its entries on each change (issue 18).
        let select = concat!("SELECT ", entry_columns!(), " FROM registration_entries");
        let order = " ORDER BY spiffe_id, id";
        let (condition, values): (&str, Vec<&str>) = match (&filter.spiffe_id, &filter.parent_id) {
            (None, None) => ("", vec![]),
            (Some(s), None) => (" WHERE spiffe_id = $1", vec![s.as_str()]),
            (None, Some(p)) => (" WHERE parent_id = $1", vec![p.as_str()]),
            (Some(s), Some(p)) => (
                " WHERE spiffe_id = $1 AND parent_id = $2",
                vec![s.as_str(), p.as_str()],
            ),
        };
        let sql = format!("{select}{condition}{order}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for v in values {
            q = q.bind(v);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(row_to_entry).collect()
    }

    /// Applies `update` to the entry `id` and bumps its revision.
    pub async fn update_entry(
        &self,
        id: &str,
        update: EntryUpdate,
    ) -> Result<RegistrationEntry, StoreError> {
        let mut entry = self.get_entry(id).await?;
        if let Some(p) = update.parent_id {
            entry.parent_id = p;
        }
        if let Some(s) = update.selectors {
            entry.selectors = sorted(s);
            validate_selectors(&entry.selectors)?;
        }
        if let Some(t) = update.x509_svid_ttl {
            entry.x509_svid_ttl = t;
        }
        if let Some(t) = update.jwt_svid_ttl {
            entry.jwt_svid_ttl = t;
        }
        if let Some(d) = update.dns_names {
            validate_dns(&d)?;
            entry.dns_names = d;
        }
        if let Some(a) = update.admin {
            entry.admin = a;
        }
        if let Some(d) = update.disabled {
            entry.disabled = d;
        }
        if let Some(h) = update.hint {
            validate_hint(h.as_ref())?;
            entry.hint = h;
        }
        entry.updated_at = now_unix();
        // Optimistic concurrency: the update applies only to the revision read above.
        let mut tx = self.begin_write().await?;
        let result = sqlx::query(
            "UPDATE registration_entries SET parent_id = $1, selectors = $2, x509_svid_ttl = $3, \
             jwt_svid_ttl = $4, dns_names = $5, admin = $6, hint = $7, revision = revision + 1, \
             updated_at = $8, disabled = $11 WHERE id = $9 AND revision = $10",
        )
        .bind(entry.parent_id.as_str())
        .bind(to_json(&entry.selectors)?)
        .bind(i64::from(entry.x509_svid_ttl))
        .bind(i64::from(entry.jwt_svid_ttl))
        .bind(to_json(&entry.dns_names)?)
        .bind(i64::from(entry.admin))
        .bind(entry.hint.clone())
        .bind(entry.updated_at)
        .bind(id)
        .bind(entry.revision)
        .bind(i64::from(entry.disabled))
        .execute(&mut *tx)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "entry {id} changed concurrently; retry"
            )));
        }
        Self::registration_changed(&mut tx, Some(id), None).await?;
        tx.commit().await?;
        entry.revision += 1;
        Ok(entry)
    }

    /// Deletes the entry `id`.
    pub async fn delete_entry(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let result = sqlx::query("DELETE FROM registration_entries WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("entry {id}")));
        }
        Self::registration_changed(&mut tx, Some(id), None).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_parsing() {
        let s: Selector = "unix:uid:1000".parse().unwrap();
        assert_eq!(s.kind, "unix");
        assert_eq!(s.value, "uid:1000");
        assert_eq!(s.to_string(), "unix:uid:1000");
        for bad in ["", "unix", ":x", "unix:", "Unix:uid:1", "unix:a\nb"] {
            assert!(bad.parse::<Selector>().is_err(), "{bad:?}");
        }
        assert!(
            "a".repeat(2000)
                .replacen('a', "u:", 1)
                .parse::<Selector>()
                .is_err()
        );
    }

    #[test]
    fn dns_validation() {
        assert!(validate_dns(&["api.example.org".into(), "*.svc".into()]).is_ok());
        for bad in ["", "a..b", "a b", &"x".repeat(64)] {
            assert!(validate_dns(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
