//! Read-through caches for the two stores every request reads: clients (client authentication,
//! CORS) and connections. Each replica keeps what it read for at most `ttl`, so a start or an
//! exchange does not pay a database round trip for settings that change a few times a year.
//!
//! - Writes made through a cache drop its entry at once; writes made elsewhere (another
//!   replica, `sesame client …` in another process) are seen within `ttl`.
//! - Misses are cached too (a burst of unknown client ids costs one read each per `ttl`), and
//!   each cache holds at most `MAX_ENTRIES` keys, so it cannot grow without bound.
//! - `list` always reads the store.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sesame_domain::{Client, ClientId, Connection, ConnectionName};
use sesame_ports::{ClientStore, ConnectionStore, StoreError};

/// Keys a cache holds before it drops what has expired (or, when nothing has, everything).
const MAX_ENTRIES: usize = 10_000;

/// Values of one kind, each with the instant it was read.
#[derive(Debug)]
struct Entries<K, V> {
    ttl: Duration,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Entries<K, V> {
    fn new(ttl: Duration) -> Self {
        Self { ttl, map: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let map = self.lock();
        map.get(key).filter(|(read, _)| read.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.retain(|_, (read, _)| read.elapsed() < self.ttl);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), value));
    }

    fn forget<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.lock().remove(key);
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

/// A `ClientStore` that remembers what it read for `ttl`.
#[derive(Debug)]
pub struct CachedClients {
    inner: Arc<dyn ClientStore>,
    clients: Entries<ClientId, Option<Client>>,
    origins: Entries<String, bool>,
}

impl CachedClients {
    pub fn new(inner: Arc<dyn ClientStore>, ttl: Duration) -> Self {
        Self { inner, clients: Entries::new(ttl), origins: Entries::new(ttl) }
    }
}

#[async_trait]
impl ClientStore for CachedClients {
    async fn find(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        if let Some(found) = self.clients.get(id) {
            return Ok(found);
        }
        let found = self.inner.find(id).await?;
        self.clients.put(id.clone(), found.clone());
        Ok(found)
    }

    async fn origin_allowed(&self, origin: &str) -> Result<bool, StoreError> {
        if let Some(allowed) = self.origins.get(origin) {
            return Ok(allowed);
        }
        let allowed = self.inner.origin_allowed(origin).await?;
        self.origins.put(origin.to_owned(), allowed);
        Ok(allowed)
    }

    async fn list(&self) -> Result<Vec<Client>, StoreError> {
        self.inner.list().await
    }

    async fn save(&self, client: &Client) -> Result<(), StoreError> {
        let saved = self.inner.save(client).await;
        self.clients.forget(&client.id);
        self.origins.clear();
        saved
    }

    async fn delete(&self, id: &ClientId) -> Result<bool, StoreError> {
        let deleted = self.inner.delete(id).await;
        self.clients.forget(id);
        self.origins.clear();
        deleted
    }
}

/// A `ConnectionStore` that remembers what it read for `ttl`.
#[derive(Debug)]
pub struct CachedConnections {
    inner: Arc<dyn ConnectionStore>,
    connections: Entries<ConnectionName, Option<Connection>>,
}

impl CachedConnections {
    pub fn new(inner: Arc<dyn ConnectionStore>, ttl: Duration) -> Self {
        Self { inner, connections: Entries::new(ttl) }
    }
}

#[async_trait]
impl ConnectionStore for CachedConnections {
    async fn find(&self, name: &ConnectionName) -> Result<Option<Connection>, StoreError> {
        if let Some(found) = self.connections.get(name) {
            return Ok(found);
        }
        let found = self.inner.find(name).await?;
        self.connections.put(name.clone(), found.clone());
        Ok(found)
    }

    async fn list(&self) -> Result<Vec<Connection>, StoreError> {
        self.inner.list().await
    }

    async fn save(&self, connection: &Connection) -> Result<(), StoreError> {
        let saved = self.inner.save(connection).await;
        self.connections.forget(&connection.name);
        saved
    }
}

#[cfg(test)]
mod tests {

    use std::sync::atomic::{AtomicUsize, Ordering};

    use sesame_memory::MemoryStore;
    use sesame_ports::testkit;

    use super::*;

    /// Counts reads that reach the store.
    #[derive(Debug, Default)]
    struct Counting {
        store: MemoryStore,
        finds: AtomicUsize,
        origins: AtomicUsize,
        connections: AtomicUsize,
    }

    #[async_trait]
    impl ClientStore for Counting {
        async fn find(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
            self.finds.fetch_add(1, Ordering::Relaxed);
            ClientStore::find(&self.store, id).await
        }
        async fn origin_allowed(&self, origin: &str) -> Result<bool, StoreError> {
            self.origins.fetch_add(1, Ordering::Relaxed);
            self.store.origin_allowed(origin).await
        }
        async fn list(&self) -> Result<Vec<Client>, StoreError> {
            ClientStore::list(&self.store).await
        }
        async fn save(&self, client: &Client) -> Result<(), StoreError> {
            ClientStore::save(&self.store, client).await
        }
        async fn delete(&self, id: &ClientId) -> Result<bool, StoreError> {
            self.store.delete(id).await
        }
    }

    #[async_trait]
    impl ConnectionStore for Counting {
        async fn find(&self, name: &ConnectionName) -> Result<Option<Connection>, StoreError> {
            self.connections.fetch_add(1, Ordering::Relaxed);
            ConnectionStore::find(&self.store, name).await
        }
        async fn list(&self) -> Result<Vec<Connection>, StoreError> {
            ConnectionStore::list(&self.store).await
        }
        async fn save(&self, connection: &Connection) -> Result<(), StoreError> {
            ConnectionStore::save(&self.store, connection).await
        }
    }

    #[tokio::test]
    async fn the_caches_keep_the_store_contract() {
        let store = Arc::new(MemoryStore::new());
        let clients = CachedClients::new(store.clone(), Duration::from_secs(60));
        let connections = CachedConnections::new(store, Duration::from_secs(60));
        testkit::client_store(Arc::new(Both(clients, connections))).await;
    }

    /// Both caches as one value, for the contract test that takes one.
    #[derive(Debug)]
    struct Both(CachedClients, CachedConnections);

    #[async_trait]
    impl ClientStore for Both {
        async fn find(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
            self.0.find(id).await
        }
        async fn origin_allowed(&self, origin: &str) -> Result<bool, StoreError> {
            self.0.origin_allowed(origin).await
        }
        async fn list(&self) -> Result<Vec<Client>, StoreError> {
            self.0.list().await
        }
        async fn save(&self, client: &Client) -> Result<(), StoreError> {
            self.0.save(client).await
        }
        async fn delete(&self, id: &ClientId) -> Result<bool, StoreError> {
            self.0.delete(id).await
        }
    }

    #[async_trait]
    impl ConnectionStore for Both {
        async fn find(&self, name: &ConnectionName) -> Result<Option<Connection>, StoreError> {
            self.1.find(name).await
        }
        async fn list(&self) -> Result<Vec<Connection>, StoreError> {
            self.1.list().await
        }
        async fn save(&self, connection: &Connection) -> Result<(), StoreError> {
            self.1.save(connection).await
        }
    }

    #[tokio::test]
    async fn reads_are_served_from_memory_until_the_ttl_ends() {
        let counting = Arc::new(Counting::default());
        let ttl = Duration::from_millis(200);
        let cache = CachedClients::new(counting.clone(), ttl);
        let id = ClientId::new("cached");
        ClientStore::save(&counting.store, &testkit::client("cached", &["https://app.example"])).await.unwrap();

        for _ in 0..5 {
            assert!(cache.find(&id).await.unwrap().is_some());
            assert!(cache.origin_allowed("https://app.example").await.unwrap());
        }
        assert_eq!(counting.finds.load(Ordering::Relaxed), 1, "one read for five finds");
        assert_eq!(counting.origins.load(Ordering::Relaxed), 1);

        // A change made elsewhere is seen once the entry is older than the ttl.
        counting.store.delete(&id).await.unwrap();
        assert!(cache.find(&id).await.unwrap().is_some(), "still cached");
        tokio::time::sleep(ttl + Duration::from_millis(20)).await;
        assert!(cache.find(&id).await.unwrap().is_none(), "the deletion is seen after the ttl");
        assert_eq!(counting.finds.load(Ordering::Relaxed), 2);
        // The miss is cached as well.
        assert!(cache.find(&id).await.unwrap().is_none());
        assert_eq!(counting.finds.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn writes_through_the_cache_are_seen_at_once() {
        let counting = Arc::new(Counting::default());
        let cache = CachedClients::new(counting.clone(), Duration::from_secs(3600));
        let id = ClientId::new("written");
        assert!(cache.find(&id).await.unwrap().is_none());
        assert!(!cache.origin_allowed("https://new.example").await.unwrap());

        cache.save(&testkit::client("written", &["https://new.example"])).await.unwrap();
        assert!(cache.find(&id).await.unwrap().is_some(), "saved through the cache: no stale miss");
        assert!(cache.origin_allowed("https://new.example").await.unwrap());
        assert!(cache.delete(&id).await.unwrap());
        assert!(cache.find(&id).await.unwrap().is_none(), "deleted through the cache: gone at once");

        let connections = CachedConnections::new(counting.clone(), Duration::from_secs(3600));
        let name = ConnectionName::new("email");
        assert!(connections.find(&name).await.unwrap().is_none());
        connections.save(&Connection::default_for(sesame_domain::Strategy::Email)).await.unwrap();
        assert!(connections.find(&name).await.unwrap().is_some());
        assert!(connections.find(&name).await.unwrap().is_some());
        assert_eq!(counting.connections.load(Ordering::Relaxed), 2, "a read before and one after the save");
    }

    #[tokio::test]
    async fn a_flood_of_unknown_keys_stays_bounded() {
        let counting = Arc::new(Counting::default());
        let cache = CachedClients::new(counting.clone(), Duration::from_secs(3600));
        for i in 0..(MAX_ENTRIES + 10) {
            assert!(cache.find(&ClientId::new(format!("nobody-{i}"))).await.unwrap().is_none());
        }
        assert!(cache.clients.lock().len() <= MAX_ENTRIES);
    }
}
