//! How a contract test meets a backend: [`TestDb`] is a fresh database (a SQLite file in a
//! temporary directory, or a new database on the testkit's PostgreSQL) with a migrated
//! [`Store`] on it, and `contract_tests!` turns a list of contract functions into one
//! `#[tokio::test]` per backend.
//!
//! A contract is `async fn name(store: Store)`, or `async fn name(db: TestDb)` when it needs
//! the database URL (a second `Store` on the same database, another fresh database).

use std::future::Future;

use casehook_store::Store;
use tempfile::TempDir;

/// A fresh database of one backend and a migrated store on it. Keep it alive for the whole
/// test: for SQLite it owns the temporary directory holding the file.
#[derive(Debug)]
pub struct TestDb {
    pub store: Store,
    pub url: String,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Sqlite(TempDir),
    Postgres(&'static casehook_testkit::PgServer),
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for the SQLite file");
        let url = sqlite_url(&dir, "t.db");
        let store = Store::open(&url)
            .await
            .expect("open a store on a fresh SQLite file");
        Self {
            store,
            url,
            backend: Backend::Sqlite(dir),
        }
    }

    /// `None` when PostgreSQL is not installed (the testkit has already warned loudly).
    pub async fn postgres() -> Option<Self> {
        // `createdb` runs as a child process; keep it off the runtime's worker threads.
        let (pg, url) = tokio::task::spawn_blocking(|| {
            let pg = casehook_testkit::postgres()?;
            Some((pg, pg.create_database()))
        })
        .await
        .expect("the testkit does not panic")?;
        let store = Store::open(&url)
            .await
            .expect("open a store on a fresh PostgreSQL database");
        Some(Self {
            store,
            url,
            backend: Backend::Postgres(pg),
        })
    }

    /// A second, independent handle on the same database: its own pools and writer, which is
    /// what another server process looks like to the database.
    pub async fn open_another(&self) -> Store {
        Store::open(&self.url)
            .await
            .expect("open a second store on the same database")
    }

    /// The URL of another fresh, empty (unmigrated) database of the same backend.
    pub async fn fresh_url(&self) -> String {
        match &self.backend {
            Backend::Sqlite(dir) => sqlite_url(dir, &format!("{}.db", uuid::Uuid::new_v4())),
            Backend::Postgres(pg) => {
                let pg = *pg;
                tokio::task::spawn_blocking(move || pg.create_database())
                    .await
                    .expect("the testkit creates a database")
            }
        }
    }
}

fn sqlite_url(dir: &TempDir, file: &str) -> String {
    format!("sqlite:{}", dir.path().join(file).display())
}

/// A contract test function, whichever handle it takes; `Input` only tells the two apart.
pub trait Contract<Input> {
    fn run(self, db: TestDb) -> impl Future<Output = ()>;
}

impl<F, Fut> Contract<Store> for F
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    async fn run(self, db: TestDb) {
        self(db.store.clone()).await;
        // The database (and SQLite's directory) outlives the test body.
        drop(db);
    }
}

impl<F, Fut> Contract<TestDb> for F
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    async fn run(self, db: TestDb) {
        self(db).await;
    }
}

pub async fn run<Input, C: Contract<Input>>(contract: C, db: TestDb) {
    contract.run(db).await;
}

/// Generates `sqlite::name` and `postgres::name`, multi-threaded tokio tests, for each contract
/// function `name` of the calling module:
///
/// ```ignore
/// contract_tests!(
///     postgres(#[should_panic]);            // optional: one backend's attributes for every test
///     a,
///     #[should_panic] b,                    // a test's attributes, for both backends
///     c => sqlite(#[should_panic]),         // one backend's attributes for one test
/// );
/// ```
///
/// For each backend the most specific attributes win, replacing the others: the test's own
/// for that backend, else the module's for that backend, else the test's attributes.
macro_rules! contract_tests {
    (@test sqlite $own:tt $module:tt [sqlite ($($attr:tt)*)] $name:ident) => {
        $crate::harness::contract_tests!(@emit sqlite [$($attr)*] $name);
    };
    (@test postgres $own:tt $module:tt [postgres ($($attr:tt)*)] $name:ident) => {
        $crate::harness::contract_tests!(@emit postgres [$($attr)*] $name);
    };
    (@test sqlite $own:tt [sqlite ($($attr:tt)*)] $test:tt $name:ident) => {
        $crate::harness::contract_tests!(@emit sqlite [$($attr)*] $name);
    };
    (@test postgres $own:tt [postgres ($($attr:tt)*)] $test:tt $name:ident) => {
        $crate::harness::contract_tests!(@emit postgres [$($attr)*] $name);
    };
    (@test $backend:ident $own:tt $module:tt $test:tt $name:ident) => {
        $crate::harness::contract_tests!(@emit $backend $own $name);
    };
    (@emit sqlite [$($attr:tt)*] $name:ident) => {
        $($attr)*
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let db = $crate::harness::TestDb::sqlite().await;
            $crate::harness::run(super::$name, db).await;
        }
    };
    (@emit postgres [$($attr:tt)*] $name:ident) => {
        $($attr)*
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(db) = $crate::harness::TestDb::postgres().await else { return };
            $crate::harness::run(super::$name, db).await;
        }
    };
    (@expand $module:tt $($(#[$meta:meta])* $name:ident $(=> $backend:ident $attrs:tt)?),+ $(,)?) => {
        mod sqlite {
            $($crate::harness::contract_tests!(
                @test sqlite [$(#[$meta])*] $module [$($backend $attrs)?] $name
            );)+
        }

        mod postgres {
            $($crate::harness::contract_tests!(
                @test postgres [$(#[$meta])*] $module [$($backend $attrs)?] $name
            );)+
        }
    };
    ($backend:ident ($($attr:tt)*); $($tests:tt)+) => {
        $crate::harness::contract_tests!(@expand [$backend ($($attr)*)] $($tests)+);
    };
    ($($tests:tt)+) => {
        $crate::harness::contract_tests!(@expand [] $($tests)+);
    };
}
pub(crate) use contract_tests;
