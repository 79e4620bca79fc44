//! Leader election with a `coordination.k8s.io/v1` Lease, so two operator replicas are safe:
//! only the holder reconciles. Optimistic concurrency (resourceVersion) makes take-over atomic.
//! `decide` is pure; `LeaderElector` does the I/O.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::Api;

/// What to do with the Lease as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it.
    TakeOver,
    /// Someone else holds a valid Lease: wait.
    Wait,
}

/// Decides from the Lease's spec, our identity and the time.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::TakeOver;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            let duration =
                SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            match renewed {
                Some(t) if t + duration > now => Decision::Wait,
                _ => Decision::TakeOver,
            }
        }
    }
}

/// Holds or waits for the Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_seconds: i32,
}

impl LeaderElector {
    /// An elector for Lease `name` in the Api's namespace.
    pub fn new(api: Api<Lease>, name: String, identity: String, lease_seconds: i32) -> Self {
        LeaderElector {
            api,
            name,
            identity,
            lease_seconds,
        }
    }

    /// One attempt: `Ok(true)` when we hold the Lease afterwards. A lost race is `Ok(false)`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        if decision == Decision::Wait {
            return Ok(false);
        }
        let previous = current
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let spec = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_seconds),
            acquire_time: if decision == Decision::Renew {
                previous.acquire_time.clone()
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(
                previous.lease_transitions.unwrap_or(0)
                    + i32::from(decision == Decision::TakeOver && current.is_some()),
            ),
            ..LeaseSpec::default()
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn holder_renews_others_wait_until_expiry() {
        let now = Timestamp::from_second(1000).unwrap();
        assert_eq!(decide(None, "a", now), Decision::TakeOver);
        assert_eq!(decide(Some(&spec("a", 990)), "a", now), Decision::Renew);
        assert_eq!(decide(Some(&spec("b", 990)), "a", now), Decision::Wait);
        assert_eq!(decide(Some(&spec("b", 980)), "a", now), Decision::TakeOver);
        assert_eq!(decide(Some(&spec("", 999)), "a", now), Decision::TakeOver);
    }
}
