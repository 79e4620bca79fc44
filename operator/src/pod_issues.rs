//! Pod-level causes of trouble, read from pod status: `Unschedulable` (e.g. no free
//! `amd.com/gpu`), `ImagePullBackOff`, `CreateContainerConfigError` (e.g. a missing Secret key),
//! `CrashLoopBackOff`, `OOMKilled`. Pure.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use learning_crds::conditions::reasons;

/// The most telling problem of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIssue {
    /// Pod name.
    pub pod: String,
    /// A reason constant from `learning_crds::conditions::reasons`.
    pub reason: &'static str,
    /// Kubernetes' message (scheduler or kubelet), shortened.
    pub message: String,
}

fn short(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn container_issue(c: &ContainerStatus) -> Option<(u8, &'static str, String)> {
    let terminated_oom = |t: Option<&k8s_openapi::api::core::v1::ContainerStateTerminated>| {
        t.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
    };
    let state = c.state.as_ref();
    let last = c.last_state.as_ref();
    // `lastState` keeps the OOM kill for the life of the container: it counts only while the
    // restarted container has not recovered (waiting, e.g. in back-off, or not ready yet).
    let recovering = state.is_some_and(|s| s.waiting.is_some()) || !c.ready;
    if terminated_oom(state.and_then(|s| s.terminated.as_ref()))
        || (recovering && terminated_oom(last.and_then(|s| s.terminated.as_ref())))
    {
        return Some((
            0,
            reasons::OOM_KILLED,
            format!(
                "container {} was killed for exceeding its memory limit",
                c.name
            ),
        ));
    }
    let waiting = state.and_then(|s| s.waiting.as_ref())?;
    let message = waiting.message.clone().unwrap_or_default();
    match waiting.reason.as_deref()? {
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull" => Some((
            1,
            reasons::IMAGE_PULL_BACK_OFF,
            format!("container {} cannot pull {}: {message}", c.name, c.image),
        )),
        "CreateContainerConfigError" | "CreateContainerError" => Some((
            2,
            reasons::CREATE_CONTAINER_CONFIG_ERROR,
            format!("container {}: {message}", c.name),
        )),
        "CrashLoopBackOff" => {
            // The last termination says why (with `FallbackToLogsOnError`, the log tail).
            let last_exit = last.and_then(|s| s.terminated.as_ref()).map(|t| {
                let why = t
                    .message
                    .as_deref()
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .or(t.reason.as_deref())
                    .unwrap_or("");
                format!(" (exit {}): {why}", t.exit_code)
            });
            Some((
                3,
                reasons::CRASH_LOOP_BACK_OFF,
                match last_exit {
                    Some(exit) => format!("container {} keeps crashing{exit}; {message}", c.name),
                    None => format!("container {} keeps crashing: {message}", c.name),
                },
            ))
        }
        _ => None,
    }
}

/// The most telling issue of `pod`, if any.
pub fn pod_issue(pod: &Pod) -> Option<PodIssue> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref()?;
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        return Some(PodIssue {
            pod: name,
            reason: reasons::UNSCHEDULABLE,
            message: short(c.message.as_deref().unwrap_or("no node fits the pod")),
        });
    }
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter_map(container_issue)
        .min_by_key(|(rank, _, _)| *rank)
        .map(|(_, reason, message)| PodIssue {
            pod: name,
            reason,
            message: short(&message),
        })
}

/// How bad a reason is, worst first: a pod that cannot be scheduled, then the container
/// ranks (`OOMKilled`, `ImagePullBackOff`, `CreateContainerConfigError`, `CrashLoopBackOff`).
fn severity(reason: &str) -> u8 {
    match reason {
        reasons::UNSCHEDULABLE => 0,
        reasons::OOM_KILLED => 1,
        reasons::IMAGE_PULL_BACK_OFF => 2,
        reasons::CREATE_CONTAINER_CONFIG_ERROR => 3,
        reasons::CRASH_LOOP_BACK_OFF => 4,
        _ => 5,
    }
}

/// The issues of `pods`, worst kind first (stable by pod name within a kind).
pub fn issues(pods: &[Pod]) -> Vec<PodIssue> {
    let mut v: Vec<PodIssue> = pods.iter().filter_map(pod_issue).collect();
    v.sort_by(|a, b| (severity(a.reason), &a.pod).cmp(&(severity(b.reason), &b.pod)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p-1"}, "status": status})).unwrap()
    }

    fn container(state: serde_json::Value, last: serde_json::Value) -> serde_json::Value {
        json!({"containerStatuses": [{"name": "c", "image": "img:1", "imageID": "", "ready": false,
            "restartCount": 3, "state": state, "lastState": last}]})
    }

    #[test]
    fn each_pod_failure_maps_to_its_reason() {
        let table: Vec<(&str, serde_json::Value, Option<&str>)> = vec![
            (
                "no free GPU",
                json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient amd.com/gpu."}]}),
                Some(reasons::UNSCHEDULABLE),
            ),
            (
                "image pull back-off",
                container(
                    json!({"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}),
                    json!({}),
                ),
                Some(reasons::IMAGE_PULL_BACK_OFF),
            ),
            (
                "image pull error",
                container(json!({"waiting": {"reason": "ErrImagePull"}}), json!({})),
                Some(reasons::IMAGE_PULL_BACK_OFF),
            ),
            (
                "crash loop",
                container(
                    json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}),
                    json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
                ),
                Some(reasons::CRASH_LOOP_BACK_OFF),
            ),
            (
                "crash loop after OOM",
                container(
                    json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                    json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
                ),
                Some(reasons::OOM_KILLED),
            ),
            (
                "OOM right now",
                container(
                    json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
                    json!({}),
                ),
                Some(reasons::OOM_KILLED),
            ),
            (
                "restarted after an OOM kill, not ready yet",
                container(
                    json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
                    json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
                ),
                Some(reasons::OOM_KILLED),
            ),
            (
                "missing secret key",
                container(
                    json!({"waiting": {"reason": "CreateContainerConfigError", "message": "couldn't find key dsn in Secret gustav/learning-db"}}),
                    json!({}),
                ),
                Some(reasons::CREATE_CONTAINER_CONFIG_ERROR),
            ),
            (
                "starting",
                container(
                    json!({"waiting": {"reason": "ContainerCreating"}}),
                    json!({}),
                ),
                None,
            ),
            (
                "running",
                container(
                    json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
                    json!({}),
                ),
                None,
            ),
            (
                "scheduled",
                json!({"conditions": [{"type": "PodScheduled", "status": "True"}]}),
                None,
            ),
        ];
        for (case, status, want) in table {
            assert_eq!(pod_issue(&pod(status)).map(|i| i.reason), want, "{case}");
        }
    }

    #[test]
    fn an_old_oom_kill_clears_once_the_container_runs_ready_again() {
        let p = pod(
            json!({"containerStatuses": [{"name": "c", "image": "img:1", "imageID": "",
            "ready": true, "restartCount": 1,
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        assert_eq!(pod_issue(&p), None);
    }

    #[test]
    fn issues_come_worst_kind_first_then_by_pod_name() {
        let named = |name: &str, status: serde_json::Value| {
            let mut p = pod(status);
            p.metadata.name = Some(name.into());
            p
        };
        let crash = || {
            container(
                json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
            )
        };
        let pods = vec![
            named("a-crash", crash()),
            named(
                "b-pull",
                container(json!({"waiting": {"reason": "ErrImagePull"}}), json!({})),
            ),
            named("c-crash", crash()),
            named(
                "d-unschedulable",
                json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}),
            ),
        ];
        let order: Vec<(String, &str)> = issues(&pods)
            .into_iter()
            .map(|i| (i.pod, i.reason))
            .collect();
        assert_eq!(
            order,
            [
                ("d-unschedulable".into(), reasons::UNSCHEDULABLE),
                ("b-pull".into(), reasons::IMAGE_PULL_BACK_OFF),
                ("a-crash".into(), reasons::CRASH_LOOP_BACK_OFF),
                ("c-crash".into(), reasons::CRASH_LOOP_BACK_OFF),
            ]
        );
    }

    #[test]
    fn a_crash_loop_says_how_the_container_last_ended() {
        let p = pod(container(
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}),
            json!({"terminated": {"exitCode": 2, "reason": "Error",
                "message": "config error: LEARNING_DATABASE_URL: invalid DSN\n"}}),
        ));
        let issue = pod_issue(&p).unwrap();
        assert_eq!(issue.reason, reasons::CRASH_LOOP_BACK_OFF);
        assert!(
            issue
                .message
                .contains("(exit 2): config error: LEARNING_DATABASE_URL: invalid DSN"),
            "{}",
            issue.message
        );
    }

    #[test]
    fn unschedulable_keeps_the_schedulers_words() {
        let p = pod(
            json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient amd.com/gpu."}]}),
        );
        let issue = pod_issue(&p).unwrap();
        assert!(
            issue.message.contains("Insufficient amd.com/gpu"),
            "{issue:?}"
        );
        assert_eq!(issue.pod, "p-1");
    }
}
