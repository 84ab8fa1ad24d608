//! Wake-ups for job workers: after a batch that enqueued jobs commits, the workers of those
//! queues are woken at once instead of discovering the work by polling. On PostgreSQL the
//! writer also sends `NOTIFY casehook_wake, '<queues>'` inside the batch's transaction, and
//! every process listens, so work committed by one process wakes the workers of all.
//!
//! A `watch` channel per queue carries a counter; a worker that was busy when the wake-up
//! came sees the change the next time it waits, so no wake-up is lost.
//!
//! Committed events also leave news for the dispatcher: which workspaces' feeds grew, and to
//! which sequence number when this process wrote them. The dispatcher then looks at those
//! workspaces only, instead of comparing every workspace's feed with its cursor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use casehook_core::WorkspaceId;
use tokio::sync::watch;

use crate::events::EVENTS_WAKE;

/// Woken when API keys were created or revoked, in any process: verified-key caches forget
/// what they hold (a revoked key stops working everywhere at once, and a key just created
/// is no longer refused from a cached miss).
pub const API_KEYS_CHANGED: &str = "changed/api-keys";

/// Woken when inbound hooks or their URL tokens changed, in any process: hook caches forget
/// what they hold.
pub const INBOUND_HOOKS_CHANGED: &str = "changed/inbound-hooks";

/// The PostgreSQL channel wake-ups travel on.
pub(crate) const PG_CHANNEL: &str = "casehook_wake";

/// In a PostgreSQL wake-up, `events/<workspace id>` names a workspace whose feed grew.
const FEED_PREFIX: &str = "events/";

/// In a PostgreSQL wake-up, `from/<id>` names the process that sent it: a process hears
/// its own announcements too, and has already woken its workers for them.
const ORIGIN_PREFIX: &str = "from/";

/// Workspaces named in one PostgreSQL wake-up at most (a payload is limited to 8,000 bytes);
/// a batch that wrote events for more sends the bare `events`, which means "look at all".
const MAX_FEEDS_ANNOUNCED: usize = 100;

/// Workspaces with news held at most; past this the dispatcher is told to look at all.
const MAX_FEED_NEWS: usize = 10_000;

/// What a committed batch announces: the job queues that got work, and the workspaces whose
/// event feeds grew, each with the last sequence number the batch wrote.
#[derive(Clone, Debug, Default)]
pub(crate) struct Wakes {
    pub(crate) queues: BTreeSet<String>,
    pub(crate) feeds: BTreeMap<WorkspaceId, i64>,
}

impl Wakes {
    pub(crate) fn queue(&mut self, queue: &str) {
        if !self.queues.contains(queue) {
            self.queues.insert(queue.to_owned());
        }
    }

    /// The workspace's feed got events up to `sequence` (and the dispatcher is woken).
    pub(crate) fn feed(&mut self, workspace: WorkspaceId, sequence: i64) {
        self.queue(EVENTS_WAKE);
        let latest = self.feeds.entry(workspace).or_insert(sequence);
        *latest = (*latest).max(sequence);
    }

    pub(crate) fn clear(&mut self) {
        self.queues.clear();
        self.feeds.clear();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queues.is_empty() && self.feeds.is_empty()
    }

    /// The payload of a PostgreSQL wake-up from the process `origin`: the queues,
    /// comma-separated, and the workspaces whose feeds grew as `events/<id>` (besides
    /// `events`, which a process that does not know the longer form reads as before).
    pub(crate) fn payload(&self, origin: &str) -> String {
        let mut parts = vec![format!("{ORIGIN_PREFIX}{origin}")];
        parts.extend(self.queues.iter().cloned());
        if self.feeds.len() <= MAX_FEEDS_ANNOUNCED {
            parts.extend(self.feeds.keys().map(|w| format!("{FEED_PREFIX}{}", w.0)));
        }
        parts.join(",")
    }
}

/// What the dispatcher has to look at since it last asked (`Store::take_feed_news`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedNews {
    /// Every workspace: at start, after news from another process that did not say which,
    /// or after more news than is kept.
    All,
    /// These workspaces' feeds grew; to the given sequence number when this process wrote
    /// the events, unknown (`None`) when another process did.
    Some(HashMap<WorkspaceId, Option<i64>>),
}

impl FeedNews {
    fn add(&mut self, workspace: WorkspaceId, latest: Option<i64>) {
        let FeedNews::Some(news) = self else {
            return;
        };
        if news.len() >= MAX_FEED_NEWS && !news.contains_key(&workspace) {
            *self = FeedNews::All;
            return;
        }
        let known = news.entry(workspace).or_insert(latest);
        *known = match (*known, latest) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
}

#[derive(Debug)]
pub(crate) struct Notifiers {
    queues: Mutex<HashMap<String, watch::Sender<u64>>>,
    news: Mutex<FeedNews>,
    /// This store's name in its PostgreSQL wake-ups.
    pub(crate) origin: String,
}

impl Default for Notifiers {
    fn default() -> Self {
        Self {
            queues: Mutex::default(),
            origin: uuid::Uuid::new_v4().simple().to_string(),
            // A dispatcher's first look covers every workspace.
            news: Mutex::new(FeedNews::All),
        }
    }
}

impl Notifiers {
    /// A receiver that changes whenever `queue` gets new committed work.
    pub(crate) fn subscribe(&self, queue: &str) -> watch::Receiver<u64> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .entry(queue.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// The news gathered since the last call; the next call returns only what comes after.
    pub(crate) fn take_feed_news(&self) -> FeedNews {
        let mut news = self.news.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *news, FeedNews::Some(HashMap::new()))
    }

    /// Wake the workers of what a local batch committed. The feed news is left before the
    /// dispatcher is woken, so a dispatcher that takes the news after its wake-up finds it.
    pub(crate) fn wake(&self, wakes: &Wakes) {
        if !wakes.feeds.is_empty() {
            let mut news = self.news.lock().unwrap_or_else(|p| p.into_inner());
            for (workspace, sequence) in &wakes.feeds {
                news.add(*workspace, Some(*sequence));
            }
        }
        self.wake_queues(&wakes.queues);
    }

    /// Wake the workers of what another process announced (see `Wakes::payload`).
    fn wake_announced(&self, payload: &str) {
        let mut queues = BTreeSet::new();
        let mut feeds = Vec::new();
        for part in payload.split(',') {
            if part.strip_prefix(ORIGIN_PREFIX) == Some(self.origin.as_str()) {
                return;
            }
            match part.strip_prefix(FEED_PREFIX) {
                Some(id) => match id.parse() {
                    Ok(id) => feeds.push(WorkspaceId(id)),
                    Err(_) => tracing::debug!(part, "unreadable workspace in a wake-up"),
                },
                None => {
                    queues.insert(part.to_owned());
                }
            }
        }
        if queues.contains(EVENTS_WAKE) {
            let mut news = self.news.lock().unwrap_or_else(|p| p.into_inner());
            if feeds.is_empty() {
                *news = FeedNews::All;
            }
            for workspace in feeds {
                news.add(workspace, None);
            }
        }
        self.wake_queues(&queues);
    }

    /// Announcements may have been missed: every worker and the dispatcher look again, the
    /// dispatcher at every workspace.
    fn lost_track(&self) {
        *self.news.lock().unwrap_or_else(|p| p.into_inner()) = FeedNews::All;
        let map = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        for tx in map.values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn wake_queues(&self, queues: &BTreeSet<String>) {
        if queues.is_empty() {
            return;
        }
        let map = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        for q in queues {
            if let Some(tx) = map.get(q) {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

/// Listen for other processes' wake-ups until the pool closes, reconnecting after errors.
pub(crate) async fn listen(pool: sqlx::PgPool, notifiers: std::sync::Weak<Notifiers>) {
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        if pool.is_closed() || notifiers.strong_count() == 0 {
            return;
        }
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(PG_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen for wake-ups yet; polling meanwhile");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
                continue;
            }
        };
        delay = std::time::Duration::from_millis(100);
        // Wake-ups sent while no listener was connected are lost: look at everything once.
        match notifiers.upgrade() {
            Some(notifiers) => notifiers.lost_track(),
            None => return,
        }
        loop {
            match listener.recv().await {
                Ok(notification) => {
                    let Some(notifiers) = notifiers.upgrade() else {
                        return;
                    };
                    notifiers.wake_announced(notification.payload());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "wake-up listener lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(n: u128) -> WorkspaceId {
        WorkspaceId(uuid::Uuid::from_u128(n))
    }

    fn news(n: &Notifiers) -> HashMap<WorkspaceId, Option<i64>> {
        match n.take_feed_news() {
            FeedNews::Some(news) => news,
            FeedNews::All => panic!("expected news of some workspaces, got All"),
        }
    }

    #[test]
    fn local_news_keeps_the_highest_sequence_and_is_taken_once() {
        let n = Notifiers::default();
        assert_eq!(
            n.take_feed_news(),
            FeedNews::All,
            "the first look is at all"
        );
        let mut a = Wakes::default();
        a.feed(ws(1), 4);
        a.feed(ws(1), 2);
        a.feed(ws(2), 7);
        assert!(a.queues.contains(EVENTS_WAKE));
        n.wake(&a);
        let mut b = Wakes::default();
        b.feed(ws(1), 9);
        n.wake(&b);
        assert_eq!(
            news(&n),
            [(ws(1), Some(9)), (ws(2), Some(7))].into(),
            "highest sequence per workspace"
        );
        assert!(news(&n).is_empty());
    }

    #[test]
    fn announcements_carry_workspaces_and_skip_their_sender() {
        let (sender, receiver) = (Notifiers::default(), Notifiers::default());
        let _ = receiver.take_feed_news();
        let mut wakes = Wakes::default();
        wakes.queue("deliveries");
        wakes.feed(ws(3), 12);
        let payload = wakes.payload(&sender.origin);

        let events = receiver.subscribe(EVENTS_WAKE);
        let deliveries = receiver.subscribe("deliveries");
        receiver.wake_announced(&payload);
        assert!(events.has_changed().is_ok_and(|c| c), "events woken");
        assert!(
            deliveries.has_changed().is_ok_and(|c| c),
            "deliveries woken"
        );
        assert_eq!(
            news(&receiver),
            [(ws(3), None)].into(),
            "another process's sequence is not known here"
        );
        // A local sequence and an unknown one for the same workspace: unknown wins.
        let mut local = Wakes::default();
        local.feed(ws(3), 12);
        receiver.wake(&local);
        receiver.wake_announced(&payload);
        assert_eq!(news(&receiver), [(ws(3), None)].into());

        // Its own announcement changes nothing for the sender.
        let _ = sender.take_feed_news();
        let own = sender.subscribe("deliveries");
        sender.wake_announced(&payload);
        assert!(own.has_changed().is_ok_and(|c| !c), "not woken twice");
        assert!(news(&sender).is_empty());
    }

    #[test]
    fn unnamed_or_too_much_news_means_look_at_all() {
        let n = Notifiers::default();
        let _ = n.take_feed_news();
        // A process that names no workspace (an older one, or one whose batch wrote events
        // for too many to name).
        n.wake_announced("from/someone,events");
        assert_eq!(n.take_feed_news(), FeedNews::All);

        let mut many = Wakes::default();
        for i in 0..=MAX_FEEDS_ANNOUNCED as u128 {
            many.feed(ws(i), 1);
        }
        let payload = many.payload("someone");
        assert!(!payload.contains(FEED_PREFIX), "{payload}");
        n.wake_announced(&payload);
        assert_eq!(n.take_feed_news(), FeedNews::All);

        let mut huge = Wakes::default();
        for i in 0..=MAX_FEED_NEWS as u128 {
            huge.feed(ws(i), 1);
        }
        n.wake(&huge);
        assert_eq!(n.take_feed_news(), FeedNews::All, "news is bounded");
        // Queues other than events leave the news alone.
        n.wake_announced("from/someone,deliveries");
        assert!(news(&n).is_empty());
    }
}
