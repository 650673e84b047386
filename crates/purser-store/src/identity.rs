//! Boundaries, users, API tokens and sessions in storage.
//!
//! Secrets (token and session values) are never stored: only their digest
//! ([`purser_core::identity::secret_digest`]), so a copy of the database opens no door.

use std::collections::BTreeSet;

use jiff::Timestamp;
use purser_core::audit::Actor;
use purser_core::identity::{NewUser, Principal, Role, User};
use purser_core::{BoundaryName, BoundaryRule, Country};
use serde::Serialize;
use serde_json::json;

use crate::audit::append;
use crate::db::{Row, Value};
use crate::{Store, StoreError, from_micros, join_list, opt_from_micros, split_list};

/// An API token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: String,
    pub user_id: String,
    pub username: String,
    pub name: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A signed-in session: who, and the token its forms must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub principal: Principal,
    pub user: User,
    pub csrf_token: String,
}

const USER_COLUMNS: &str =
    "id, username, display_name, roles, clearances, residency, disabled_at, created_at";

fn user_from_row(row: &Row) -> Result<User, StoreError> {
    let roles = split_list(&row.text(3)?)
        .map(Role::parse)
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|r| StoreError::Corrupt(format!("users.roles: {r}")))?;
    Ok(User {
        id: row.text(0)?,
        username: row.text(1)?,
        display_name: row.text(2)?,
        roles,
        clearances: split_list(&row.text(4)?).map(str::to_owned).collect(),
        residency: row
            .opt_text(5)?
            .map(|c| Country::parse(&c))
            .transpose()
            .map_err(|r| StoreError::Corrupt(format!("users.residency: {r}")))?,
        disabled_at: opt_from_micros(row.opt_int(6)?)?,
        created_at: from_micros(row.int(7)?)?,
    })
}

fn rule_from_row(row: &Row) -> Result<BoundaryRule, StoreError> {
    let corrupt = |r: String| StoreError::Corrupt(format!("boundaries: {r}"));
    Ok(BoundaryRule {
        name: BoundaryName::parse(&row.text(0)?).map_err(corrupt)?,
        description: row.text(1)?,
        required_clearance: row.opt_text(2)?,
        allowed_residencies: split_list(&row.text(3)?)
            .map(Country::parse)
            .collect::<Result<_, _>>()
            .map_err(corrupt)?,
    })
}

fn token_from_row(row: &Row) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: row.text(0)?,
        user_id: row.text(1)?,
        username: row.text(2)?,
        name: row.text(3)?,
        created_at: from_micros(row.int(4)?)?,
        expires_at: from_micros(row.int(5)?)?,
        revoked_at: opt_from_micros(row.opt_int(6)?)?,
    })
}

impl Store {
    pub(crate) async fn ensure_built_in_boundaries(&self) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        for rule in BoundaryRule::built_in() {
            insert_boundary(&mut tx, &rule, "ON CONFLICT (name) DO NOTHING").await?;
        }
        tx.commit().await
    }

    pub async fn boundary_rules(&self) -> Result<Vec<BoundaryRule>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                "SELECT name, description, required_clearance, allowed_residencies FROM boundaries ORDER BY name",
                &[],
            )
            .await?;
        rows.iter().map(rule_from_row).collect()
    }

    pub async fn create_boundary(
        &self,
        actor: &Actor,
        rule: BoundaryRule,
    ) -> Result<BoundaryRule, StoreError> {
        let mut tx = self.db.begin().await?;
        insert_boundary(&mut tx, &rule, "")
            .await
            .map_err(|e| match e {
                StoreError::UniqueViolation(_) => StoreError::Conflict {
                    field: Some("name".into()),
                    message: format!("a boundary named `{}` already exists", rule.name),
                },
                other => other,
            })?;
        append(
            &mut tx,
            actor
                .draft("boundary.create")
                .target(rule.name.as_str())
                .details(json!({ "after": rule })),
        )
        .await?;
        tx.commit().await?;
        Ok(rule)
    }

    pub async fn create_user(
        &self,
        actor: &Actor,
        user: NewUser,
        password_hash: Option<String>,
    ) -> Result<User, StoreError> {
        let now = crate::now_micros();
        let created = User {
            id: uuid::Uuid::now_v7().to_string(),
            username: user.username,
            display_name: user.display_name,
            roles: user.roles,
            clearances: user.clearances,
            residency: user.residency,
            disabled_at: None,
            created_at: now,
        };
        let mut tx = self.db.begin().await?;
        tx.execute(
            "INSERT INTO users (id, username, display_name, password_hash, roles, clearances, residency, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            &[
                (&created.id).into(),
                (&created.username).into(),
                (&created.display_name).into(),
                password_hash.into(),
                join_list(created.roles.iter().map(|r| r.as_str())).into(),
                join_list(created.clearances.iter().map(String::as_str)).into(),
                created.residency.map(|c| c.to_string()).into(),
                Value::Int(now.as_microsecond()),
            ],
        )
        .await
        .map_err(|e| match e {
            StoreError::UniqueViolation(_) => StoreError::Conflict {
                field: Some("username".into()),
                message: format!("the username `{}` is taken", created.username),
            },
            other => other,
        })?;
        append(
            &mut tx,
            actor
                .draft("user.create")
                .target(&created.id)
                .details(json!({ "after": created })),
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                &format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"),
                &[],
            )
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn user(&self, id: &str) -> Result<User, StoreError> {
        let mut handle = self.db.read().await?;
        let row = handle
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                &[id.into()],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        user_from_row(&row)
    }

    /// The user and their password hash, for signing in.
    pub async fn user_credentials(
        &self,
        username: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let mut handle = self.db.read().await?;
        let row = handle
            .query_opt(
                &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1"),
                &[username.trim().to_lowercase().into()],
            )
            .await?;
        row.map(|row| Ok((user_from_row(&row)?, row.opt_text(8)?)))
            .transpose()
    }

    /// Replaces a user's name, roles, clearances and residency, and their password
    /// when `password_hash` is given. Takes effect at the user's next request: scopes
    /// are built per request, so a withdrawn clearance closes its boundary at once.
    pub async fn update_user(
        &self,
        actor: &Actor,
        id: &str,
        changed: &NewUser,
        password_hash: Option<String>,
    ) -> Result<User, StoreError> {
        let before = self.user(id).await?;
        let mut tx = self.db.begin().await?;
        tx.execute(
            "UPDATE users SET display_name = $1, roles = $2, clearances = $3, residency = $4, \
             password_hash = COALESCE($5, password_hash), updated_at = $6 WHERE id = $7",
            &[
                (&changed.display_name).into(),
                join_list(changed.roles.iter().map(|r| r.as_str())).into(),
                join_list(changed.clearances.iter().map(String::as_str)).into(),
                changed.residency.map(|c| c.to_string()).into(),
                password_hash.clone().into(),
                Value::Int(Timestamp::now().as_microsecond()),
                id.into(),
            ],
        )
        .await?;
        let after = User {
            display_name: changed.display_name.clone(),
            roles: changed.roles.clone(),
            clearances: changed.clearances.clone(),
            residency: changed.residency,
            ..before.clone()
        };
        append(
            &mut tx,
            actor.draft("user.update").target(id).details(json!({
                "before": before,
                "after": after,
                "password_changed": password_hash.is_some(),
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Disables or re-enables a user. Disabling ends their sessions at once; their
    /// tokens stop working because every token lookup checks the user.
    pub async fn set_user_disabled(
        &self,
        actor: &Actor,
        id: &str,
        disabled: bool,
    ) -> Result<User, StoreError> {
        let before = self.user(id).await?;
        let mut tx = self.db.begin().await?;
        let at = disabled.then(|| Timestamp::now().as_microsecond());
        tx.execute(
            "UPDATE users SET disabled_at = $1, updated_at = $2 WHERE id = $3",
            &[
                at.into(),
                Value::Int(Timestamp::now().as_microsecond()),
                id.into(),
            ],
        )
        .await?;
        if disabled {
            tx.execute("DELETE FROM sessions WHERE user_id = $1", &[id.into()])
                .await?;
        }
        append(
            &mut tx,
            actor
                .draft(if disabled {
                    "user.disable"
                } else {
                    "user.enable"
                })
                .target(id)
                .details(json!({
                    "username": before.username,
                    "before": { "disabled": before.disabled_at.is_some() },
                    "after": { "disabled": disabled },
                })),
        )
        .await?;
        tx.commit().await?;
        self.user(id).await
    }

    pub async fn create_token(
        &self,
        actor: &Actor,
        user_id: &str,
        name: &str,
        secret_digest: &str,
        expires_at: Timestamp,
    ) -> Result<ApiToken, StoreError> {
        let user = self.user(user_id).await?;
        let now = crate::now_micros();
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.db.begin().await?;
        tx.execute(
            "INSERT INTO api_tokens (id, user_id, name, secret_digest, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                (&id).into(),
                user_id.into(),
                name.into(),
                secret_digest.into(),
                Value::Int(now.as_microsecond()),
                Value::Int(expires_at.as_microsecond()),
            ],
        )
        .await
        .map_err(|e| match e {
            StoreError::UniqueViolation(_) => StoreError::Conflict {
                field: Some("name".into()),
                message: format!("{} already has a token named `{name}`", user.username),
            },
            other => other,
        })?;
        append(
            &mut tx,
            actor
                .draft("token.create")
                .target(&id)
                .details(json!({ "user": user.username, "name": name, "expires_at": expires_at })),
        )
        .await?;
        tx.commit().await?;
        Ok(ApiToken {
            id,
            user_id: user.id,
            username: user.username,
            name: name.to_owned(),
            created_at: now,
            expires_at,
            revoked_at: None,
        })
    }

    /// Tokens of one user, or of everyone.
    pub async fn tokens(&self, user_id: Option<&str>) -> Result<Vec<ApiToken>, StoreError> {
        let mut handle = self.db.read().await?;
        let sql = "SELECT t.id, t.user_id, u.username, t.name, t.created_at, t.expires_at, t.revoked_at \
                   FROM api_tokens t JOIN users u ON u.id = t.user_id";
        let rows = match user_id {
            Some(user_id) => {
                handle
                    .query(
                        &format!("{sql} WHERE t.user_id = $1 ORDER BY t.created_at DESC"),
                        &[user_id.into()],
                    )
                    .await?
            }
            None => {
                handle
                    .query(
                        &format!("{sql} ORDER BY u.username, t.created_at DESC"),
                        &[],
                    )
                    .await?
            }
        };
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes a token. With `owner`, only a token of that user (one's own).
    pub async fn revoke_token(
        &self,
        actor: &Actor,
        id: &str,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let now = Timestamp::now().as_microsecond();
        let n = match owner {
            Some(owner) => {
                tx.execute(
                    "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
                    &[Value::Int(now), id.into(), owner.into()],
                )
                .await?
            }
            None => {
                tx.execute(
                    "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                    &[Value::Int(now), id.into()],
                )
                .await?
            }
        };
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        append(&mut tx, actor.draft("token.revoke").target(id)).await?;
        tx.commit().await
    }

    /// The caller a bearer token stands for, if it is live and its user enabled.
    pub async fn principal_for_token(
        &self,
        secret_digest: &str,
        now: Timestamp,
    ) -> Result<Option<Principal>, StoreError> {
        let mut handle = self.db.read().await?;
        let row = handle
            .query_opt(
                &format!(
                    "SELECT {}, t.name FROM api_tokens t JOIN users u ON u.id = t.user_id \
                     WHERE t.secret_digest = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.disabled_at IS NULL",
                    prefixed("u", USER_COLUMNS)
                ),
                &[secret_digest.into(), Value::Int(now.as_microsecond())],
            )
            .await?;
        row.map(|row| Ok(user_from_row(&row)?.principal(Some(row.text(8)?))))
            .transpose()
    }

    pub async fn create_session(
        &self,
        user_id: &str,
        secret_digest: &str,
        csrf_token: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            "INSERT INTO sessions (secret_digest, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            &[
                secret_digest.into(),
                user_id.into(),
                csrf_token.into(),
                Value::Int(Timestamp::now().as_microsecond()),
                Value::Int(expires_at.as_microsecond()),
            ],
        )
        .await?;
        tx.commit().await
    }

    pub async fn session(
        &self,
        secret_digest: &str,
        now: Timestamp,
    ) -> Result<Option<SessionInfo>, StoreError> {
        let mut handle = self.db.read().await?;
        let row = handle
            .query_opt(
                &format!(
                    "SELECT {}, s.csrf_token FROM sessions s JOIN users u ON u.id = s.user_id \
                     WHERE s.secret_digest = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
                    prefixed("u", USER_COLUMNS)
                ),
                &[secret_digest.into(), Value::Int(now.as_microsecond())],
            )
            .await?;
        row.map(|row| {
            let user = user_from_row(&row)?;
            Ok(SessionInfo {
                principal: user.principal(None),
                user,
                csrf_token: row.text(8)?,
            })
        })
        .transpose()
    }

    pub async fn end_session(&self, secret_digest: &str) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            "DELETE FROM sessions WHERE secret_digest = $1",
            &[secret_digest.into()],
        )
        .await?;
        tx.commit().await
    }

    /// Deletes expired sessions; returns how many.
    pub async fn prune_sessions(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.db.begin().await?;
        let n = tx
            .execute(
                "DELETE FROM sessions WHERE expires_at <= $1",
                &[Value::Int(now.as_microsecond())],
            )
            .await?;
        tx.commit().await?;
        Ok(n)
    }
}

async fn insert_boundary(
    tx: &mut crate::db::Handle,
    rule: &BoundaryRule,
    on_conflict: &str,
) -> Result<u64, StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO boundaries (name, description, required_clearance, allowed_residencies, created_at) \
             VALUES ($1, $2, $3, $4, $5) {on_conflict}"
        ),
        &[
            rule.name.as_str().into(),
            (&rule.description).into(),
            rule.required_clearance.clone().into(),
            join_list(rule.allowed_residencies.iter().map(|c| c.as_str())).into(),
            Value::Int(Timestamp::now().as_microsecond()),
        ],
    )
    .await
}

/// `id, username` → `u.id, u.username`.
fn prefixed(alias: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
