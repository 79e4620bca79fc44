//! The one list of the kinds of children. `child_kinds!` below names each kind once, with
//! its Rust type, in deletion order; from that list it generates `ChildKind` (the kinds),
//! `Child` (a built object of one of them) and the dispatch from either to code that is
//! generic over the object's type (`KindVisitor`, `ChildVisitor`). Applying, rendering,
//! pruning and the controller's watches all walk these, so a new kind is one more line in
//! the list (plus its builder in `children`, and its RBAC rule, which a test checks).

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What the operator needs of a child's type: a namespaced Kubernetes object it can
/// serialize, apply, list, delete and watch.
pub trait ChildObject:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + k8s_openapi::Resource
    + Serialize
    + DeserializeOwned
    + Clone
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> ChildObject for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// Code that is generic over the Rust type of a child kind (see `ChildKind::visit`).
pub trait KindVisitor {
    /// What the visit gives.
    type Output;
    /// Runs with `K`, the Rust type of `kind`.
    fn visit<K: ChildObject>(self, kind: ChildKind) -> Self::Output;
}

/// Code that is generic over the type of a built child (see `Child::visit`).
pub trait ChildVisitor<'a> {
    /// What the visit gives.
    type Output;
    /// Runs with the child as its own type.
    fn visit<K: ChildObject>(self, object: &'a K) -> Self::Output;
}

/// Generates `ChildKind`, `Child` and their dispatch from one list of `Variant(Type)`.
macro_rules! child_kinds {
    ($($(#[$doc:meta])* $variant:ident($ty:ty)),+ $(,)?) => {
        /// The kinds of children the operator creates (and may therefore delete); their
        /// order is the deletion order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ChildKind {
            $($(#[$doc])* $variant,)+
        }

        impl ChildKind {
            /// Every kind, in deletion order: workloads first, isolation (NetworkPolicies)
            /// last.
            pub const ALL: &'static [ChildKind] = &[$(ChildKind::$variant),+];

            /// The Kubernetes kind.
            pub fn kind(self) -> &'static str {
                match self {
                    $(ChildKind::$variant => <$ty as k8s_openapi::Resource>::KIND,)+
                }
            }

            /// Runs `visitor` with the Rust type of this kind.
            pub fn visit<V: KindVisitor>(self, visitor: V) -> V::Output {
                match self {
                    $(ChildKind::$variant => visitor.visit::<$ty>(self),)+
                }
            }
        }

        /// One built child object.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Child {
            $($(#[$doc])* $variant(Box<$ty>),)+
        }

        impl Child {
            /// Its kind.
            pub fn kind(&self) -> ChildKind {
                match self {
                    $(Child::$variant(_) => ChildKind::$variant,)+
                }
            }

            /// Runs `visitor` with the object as its own type.
            pub fn visit<'a, V: ChildVisitor<'a>>(&'a self, visitor: V) -> V::Output {
                match self {
                    $(Child::$variant(object) => visitor.visit::<$ty>(object),)+
                }
            }
        }

        $(
            impl From<$ty> for Child {
                fn from(object: $ty) -> Self {
                    Child::$variant(Box::new(object))
                }
            }
        )+
    };
}

child_kinds! {
    /// `batch/v1` Job (model pull).
    Job(Job),
    /// `apps/v1` Deployment.
    Deployment(Deployment),
    /// `v1` Service.
    Service(Service),
    /// `policy/v1` PodDisruptionBudget.
    PodDisruptionBudget(PodDisruptionBudget),
    /// `v1` PersistentVolumeClaim.
    PersistentVolumeClaim(PersistentVolumeClaim),
    /// `v1` ServiceAccount.
    ServiceAccount(ServiceAccount),
    /// `networking.k8s.io/v1` NetworkPolicy.
    NetworkPolicy(NetworkPolicy),
}

/// The name of a child.
struct Name;

impl ChildVisitor<'_> for Name {
    type Output = String;
    fn visit<K: ChildObject>(self, object: &K) -> String {
        object.meta().name.clone().unwrap_or_default()
    }
}

impl Child {
    /// Its name.
    pub fn name(&self) -> String {
        self.visit(Name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct KindOf;

    impl KindVisitor for KindOf {
        type Output = &'static str;
        fn visit<K: ChildObject>(self, _kind: ChildKind) -> &'static str {
            <K as k8s_openapi::Resource>::KIND
        }
    }

    #[test]
    fn each_kind_dispatches_to_its_own_type() {
        for kind in ChildKind::ALL {
            assert_eq!(kind.visit(KindOf), kind.kind());
        }
        let names: Vec<&str> = ChildKind::ALL.iter().map(|k| k.kind()).collect();
        assert_eq!(
            names,
            [
                "Job",
                "Deployment",
                "Service",
                "PodDisruptionBudget",
                "PersistentVolumeClaim",
                "ServiceAccount",
                "NetworkPolicy"
            ]
        );
    }

    #[test]
    fn a_child_knows_its_kind_and_name() {
        let account = ServiceAccount {
            metadata: kube::api::ObjectMeta {
                name: Some("school-a-runner".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let child = Child::from(account);
        assert_eq!(child.kind(), ChildKind::ServiceAccount);
        assert_eq!(child.name(), "school-a-runner");
    }
}
