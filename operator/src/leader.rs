//! Leader election with a `coordination.k8s.io/v1` Lease, so two operator replicas are safe:
//! only the holder reconciles. Optimistic concurrency (resourceVersion) makes take-over atomic.
//! On a graceful stop the leader releases the Lease (clears the holder and lets it expire at
//! once, as client-go's `ReleaseOnCancel` does), so a standby takes over at its next attempt
//! instead of waiting for the Lease to expire. `decide` and `released` are pure;
//! `LeaderElector` does the I/O.

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

/// The spec of a Lease its holder gives up: no holder, valid for one more second, transitions
/// kept (the next holder counts its take-over as one).
pub fn released(previous: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: previous.lease_transitions,
        ..LeaseSpec::default()
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

    /// Gives the Lease up if we hold it: `Ok(true)` when released, `Ok(false)` when it was not
    /// ours (any more) — absent, held by another replica, or changed under us (409).
    pub async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let previous = lease.spec.clone().unwrap_or_default();
        if previous.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        lease.spec = Some(released(&previous, Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
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

    #[test]
    fn a_released_lease_is_taken_over_at_once_and_keeps_its_transitions() {
        let now = Timestamp::from_second(1000).unwrap();
        let mut held = spec("a", 999);
        held.lease_duration_seconds = Some(300);
        held.lease_transitions = Some(4);
        let free = released(&held, now);
        assert_eq!(free.holder_identity, None);
        assert_eq!(free.lease_transitions, Some(4));
        assert_eq!(free.lease_duration_seconds, Some(1));
        // Another replica need not wait for the 300 s the holder had asked for.
        assert_eq!(decide(Some(&free), "b", now), Decision::TakeOver);
        assert_eq!(decide(Some(&free), "a", now), Decision::TakeOver);
    }
}
