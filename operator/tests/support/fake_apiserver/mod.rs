//! A FAKE Kubernetes API server for tests — not kube-apiserver (none can be installed here, and
//! kind needs Docker). A real HTTP server on 127.0.0.1 so the operator talks to it through
//! kube's own client stack (hyper, chunked watch streams, kubeconfig) exactly as in a cluster,
//! minus TLS and authentication; the binary can be pointed at it with a kubeconfig.
//!
//! What it simulates: the REST paths of the types in `resources` (get, list with label
//! selectors and paging, metadata-only lists, watch from a resourceVersion with
//! ADDED/MODIFIED/DELETED and BOOKMARK events, 410 Gone after `compact`), create, replace with
//! resourceVersion preconditions, server-side apply (simplified, see `merge`), JSON merge
//! patch, the status subresource, delete with propagation, and owner-reference garbage
//! collection (see `store`). An authorizer (the operator's declared RBAC in the tests) answers
//! 403 to anything not granted, and every request is recorded. A test can stall requests (by
//! path, optionally only those of one named client): they hang for a while, then are served.
//!
//! What it does not: schema validation, defaulting, admission (CEL), finalizers, other
//! controllers (the tests play the Deployment controller by writing status through the handle).

pub mod http;
pub mod merge;
pub mod resources;
pub mod selector;
pub mod store;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub use self::http::{Authorizer, Recorded, Stall};
use self::resources::ResourceType;
pub use self::store::Propagation;
use self::store::{Key, Store, Target};

/// How the server behaves.
pub struct Options {
    /// Who may do what.
    pub authorize: Authorizer,
    /// The longest a watch stays open (the watcher then re-watches from its last version).
    pub max_watch: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            authorize: Box::new(|_| true),
            max_watch: Duration::from_secs(60),
        }
    }
}

/// A running fake API server and the test's direct handle on its store (writes through the
/// handle are not requests: not authorized, not recorded, but seen by watches).
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<http::Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rt_of(api_version: &str, kind: &str) -> &'static ResourceType {
    resources::by_kind(api_version, kind)
        .unwrap_or_else(|| panic!("the fake API server does not serve {api_version} {kind}"))
}

impl FakeApiServer {
    /// Starts a server on a free port of 127.0.0.1.
    pub async fn start(options: Options) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(http::Shared {
            store: Mutex::new(Store::default()),
            log: Mutex::new(Vec::new()),
            authorize: options.authorize,
            max_watch: options.max_watch,
            stalls: Mutex::new(Vec::new()),
            optional_crds: std::sync::atomic::AtomicBool::new(false),
        });
        let app = http::router(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeApiServer { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// A kube client that names itself `name` (header `x-fake-client`): its requests are
    /// recorded with that name, and `stall` can target them alone.
    pub fn client_as(&self, name: &str) -> kube::Client {
        let mut config = kube::Config::new(self.url().parse().unwrap());
        config.headers.push((
            ::http::HeaderName::from_static(http::CLIENT_HEADER),
            ::http::HeaderValue::from_str(name).unwrap(),
        ));
        kube::Client::try_from(config).unwrap()
    }

    /// From now on, for `duration`, holds every request whose path contains `path_contains`
    /// (of the client named `client`, or of any client when `None`) until the stall ends, then
    /// serves it: a stalled API server, or a network path that stopped delivering answers.
    pub fn stall(&self, path_contains: &str, client: Option<&str>, duration: Duration) {
        self.shared.stalls.lock().unwrap().push(Stall {
            path_contains: path_contains.to_owned(),
            client: client.map(str::to_owned),
            until: tokio::time::Instant::now() + duration,
        });
    }

    /// Installs the optional CRDs (KEDA's ScaledObject and TriggerAuthentication): from now on
    /// their types are served instead of answering 404.
    pub fn install_optional_crds(&self) {
        self.shared
            .optional_crds
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes a kubeconfig pointing at this server (for the binary's `Client::try_default`).
    pub fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: operator\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: operator\n    namespace: default\ncurrent-context: fake\n",
            self.url()
        );
        std::fs::write(path, text).unwrap();
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }

    /// How many requests have been recorded so far.
    pub fn request_count(&self) -> usize {
        self.shared.log.lock().unwrap().len()
    }

    /// The requests recorded after the first `from` (see `request_count`).
    pub fn requests_since(&self, from: usize) -> Vec<Recorded> {
        let log = self.shared.log.lock().unwrap();
        log.get(from..).unwrap_or_default().to_vec()
    }

    /// Forgets the watch history: watches from older versions get 410 Gone.
    pub fn compact(&self) {
        self.shared.store.lock().unwrap().compact();
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().unwrap().resource_version()
    }

    /// Creates an object (as an administrator would; a given status is kept).
    pub fn create(&self, obj: Value) -> Value {
        let rt = rt_of(
            obj["apiVersion"].as_str().unwrap(),
            obj["kind"].as_str().unwrap(),
        );
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        self.shared
            .store
            .lock()
            .unwrap()
            .create(rt, &ns, obj, true)
            .unwrap()
    }

    /// One object.
    pub fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let rt = rt_of(api_version, kind);
        self.shared
            .store
            .lock()
            .unwrap()
            .get(&Key::new(rt, ns, name))
            .cloned()
    }

    /// Objects of a kind in a namespace.
    pub fn list(&self, api_version: &str, kind: &str, ns: &str) -> Vec<Value> {
        let rt = rt_of(api_version, kind);
        self.shared
            .store
            .lock()
            .unwrap()
            .list(rt, Some(ns), &selector::Selector::default())
    }

    /// Every object of every kind.
    pub fn all_objects(&self) -> Vec<Value> {
        self.shared
            .store
            .lock()
            .unwrap()
            .all()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// Changes the main resource (spec, metadata) with `f`, as `kubectl edit` would.
    pub fn modify(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Value {
        let rt = rt_of(api_version, kind);
        let key = Key::new(rt, ns, name);
        let mut store = self.shared.store.lock().unwrap();
        let mut obj = store
            .get(&key)
            .cloned()
            .unwrap_or_else(|| panic!("{kind} {ns}/{name} does not exist"));
        f(&mut obj);
        store.replace(rt, &key, obj, Target::Main).unwrap()
    }

    /// Replaces the status (as the owning controller would, e.g. the Deployment controller).
    pub fn set_status(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
        name: &str,
        status: Value,
    ) -> Value {
        let rt = rt_of(api_version, kind);
        let key = Key::new(rt, ns, name);
        let mut store = self.shared.store.lock().unwrap();
        let mut obj = store
            .get(&key)
            .cloned()
            .unwrap_or_else(|| panic!("{kind} {ns}/{name} does not exist"));
        obj["status"] = status;
        store.replace(rt, &key, obj, Target::Status).unwrap()
    }

    /// Deletes an object with the given propagation (`None`: the type's default), running the
    /// garbage collector.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
        name: &str,
        propagation: Option<Propagation>,
    ) -> Value {
        let rt = rt_of(api_version, kind);
        self.shared
            .store
            .lock()
            .unwrap()
            .delete(rt, &Key::new(rt, ns, name), propagation)
            .unwrap()
    }
}
