//! A shared request to stop at the next safe point: the daemon raises it on SIGTERM/SIGINT, and
//! long work (pulls, pushes, the inbox scan, maintenance) checks it between transactions.
//!
//! Raising it never interrupts a transaction: work that sees it finishes what it is committing,
//! records its run as `stopped` and returns. It is cheap to clone (clones share one flag) and works
//! across runtimes and threads. One-shot commands hold one that is never raised.

use std::sync::Arc;

use tokio::sync::watch;

/// A stop request shared by everything that should stop together.
#[derive(Debug, Clone)]
pub struct StopSignal {
    flag: Arc<watch::Sender<bool>>,
}

impl Default for StopSignal {
    fn default() -> StopSignal {
        StopSignal::new()
    }
}

impl StopSignal {
    /// A signal not yet raised.
    pub fn new() -> StopSignal {
        StopSignal {
            flag: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Asks everything holding a clone to stop at its next safe point. Idempotent.
    pub fn request(&self) {
        self.flag.send_replace(true);
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        *self.flag.borrow()
    }

    /// Resolves once a stop is requested (at once if it already was).
    pub async fn requested(&self) {
        let mut receiver = self.flag.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = receiver.wait_for(|stopped| *stopped).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reaches_every_clone_and_wakes_a_waiter() {
        let stop = StopSignal::new();
        let clone = stop.clone();
        assert!(!clone.is_requested());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let woke = runtime.block_on(async {
            let waiter = tokio::spawn({
                let clone = clone.clone();
                async move { clone.requested().await }
            });
            stop.request();
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await
        });
        assert!(woke.is_ok(), "the waiter saw the request");
        assert!(clone.is_requested());
        // Waiting after the fact returns at once.
        runtime.block_on(clone.requested());
    }
}
