//! The gateway's health, decided in one place for every listener that reports it: the
//! admin API's `GET /healthz` (with details) and `server.health_path` on the proxy listener
//! (status only, for a load balancer). Healthy means the store answers, every issuer has
//! keys, shutdown has not begun and, on a node of a cluster, the node has caught up with
//! the shared log once since start and is not catching up again (SPEC §8); every check
//! lives in [`Health::of`] and both listeners follow.

use http::StatusCode;

use crate::cluster::ClusterState;
use crate::App;

/// What the health checks found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// The store answers a probe read.
    pub store_ok: bool,
    /// Every configured issuer has at least one key.
    pub keys_ok: bool,
    /// Shutdown has begun (SIGTERM): the node is leaving, balancers should drain it.
    pub draining: bool,
    /// On a node of a cluster: the link's state (`None` on a single node).
    pub cluster: Option<ClusterState>,
    /// The cluster lets this node be healthy (always on a single node): it caught up with
    /// the shared log once since start and is not catching up now.
    pub cluster_ok: bool,
}

impl Health {
    /// Runs the checks now.
    pub fn of(app: &App) -> Health {
        Health {
            store_ok: app.store.probe().is_ok(),
            keys_ok: app.keys.ready(&app.config()),
            draining: app.is_draining(),
            cluster: app.cluster.as_ref().map(|c| c.state()),
            cluster_ok: app.cluster.as_ref().is_none_or(|c| c.is_healthy()),
        }
    }

    /// Whether every check passed.
    pub fn is_ok(&self) -> bool {
        self.store_ok && self.keys_ok && self.cluster_ok && !self.draining
    }

    /// `200` when healthy, else `503`.
    pub fn status_code(&self) -> StatusCode {
        if self.is_ok() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }

    /// The `status` word: `ok`, `draining` (shutdown has begun) or `unavailable`.
    pub fn status_word(&self) -> &'static str {
        if self.draining {
            "draining"
        } else if self.is_ok() {
            "ok"
        } else {
            "unavailable"
        }
    }

    /// The body a load balancer sees: `{"status": ...}` and nothing else.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({ "status": self.status_word() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_failed_check_a_cluster_not_caught_up_or_draining_is_503() {
        let ok = Health {
            store_ok: true,
            keys_ok: true,
            draining: false,
            cluster: None,
            cluster_ok: true,
        };
        assert_eq!((ok.status_code(), ok.status_word()), (StatusCode::OK, "ok"));
        for h in [
            Health {
                store_ok: false,
                ..ok
            },
            Health {
                keys_ok: false,
                ..ok
            },
            Health {
                cluster: Some(ClusterState::CatchingUp),
                cluster_ok: false,
                ..ok
            },
            Health {
                cluster: Some(ClusterState::Unreachable),
                cluster_ok: false,
                ..ok
            },
        ] {
            assert_eq!(h.status_code(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(h.status_word(), "unavailable");
        }
        let leaving = Health {
            draining: true,
            ..ok
        };
        assert_eq!(leaving.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(leaving.summary(), serde_json::json!({"status": "draining"}));
    }
}
