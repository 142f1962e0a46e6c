//! The queues between an app and its open WebSocket: the client's
//! messages to the app, the app's messages to the client (each bounded,
//! so a slow side slows the other down), and the app's close.
//!
//! The app's side may call from any thread; the session's side is its
//! task. One small lock holds both queues: the session and the app mostly
//! run on the same thread, where a lock costs less than a channel's
//! atomics, semaphore and waker bookkeeping.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use plugin_api::host::{WsEvent, WsOutgoing};

/// Messages queued each way between an app and its WebSocket.
pub const CAPACITY: usize = 16;

/// Why the app's send or close failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The socket is closed.
    Closed,
    /// The app sent without waiting for room.
    Full,
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueueError::Closed => "the WebSocket is closed",
            QueueError::Full => "the WebSocket's queue is full (a send was not awaited)",
        })
    }
}

/// Both queues of one socket.
#[derive(Default)]
pub struct Queues {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    to_app: VecDeque<WsEvent>,
    to_client: VecDeque<WsOutgoing>,
    /// The close the app asked for, until the session takes it.
    close: Option<(u16, String)>,
    close_asked: bool,
    /// The app, waiting for a message or for room.
    app: Option<Waker>,
    /// The session, woken by anything the app does.
    session: Option<Waker>,
    /// The session waits for room in the app's queue.
    room_wanted: bool,
    /// The session ended: the app gets nothing more, and sends fail.
    ended: bool,
}

impl Queues {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ------------------------------------------------------- the app's side

    /// The next event for the app (`Gone` once the session ended and the
    /// queue is empty).
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<WsEvent> {
        let mut inner = self.inner();
        if let Some(event) = inner.to_app.pop_front() {
            if std::mem::take(&mut inner.room_wanted) {
                // Room for the next: the session may read on.
                inner.wake_session();
            }
            return Poll::Ready(event);
        }
        if inner.ended {
            return Poll::Ready(WsEvent::Gone);
        }
        inner.app_waits(cx.waker());
        Poll::Pending
    }

    /// Ready when the app may send a message.
    pub fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        let mut inner = self.inner();
        if inner.ended {
            return Poll::Ready(Err(QueueError::Closed));
        }
        if inner.to_client.len() < CAPACITY {
            return Poll::Ready(Ok(()));
        }
        inner.app_waits(cx.waker());
        Poll::Pending
    }

    /// Queues the app's message for the client.
    pub fn send(&self, message: WsOutgoing) -> Result<(), QueueError> {
        let mut inner = self.inner();
        if inner.ended {
            return Err(QueueError::Closed);
        }
        if inner.to_client.len() >= CAPACITY {
            return Err(QueueError::Full);
        }
        inner.to_client.push_back(message);
        inner.wake_session();
        Ok(())
    }

    /// The app's close handshake (a second close is a no-op).
    pub fn close(&self, code: u16, reason: String) -> Result<(), QueueError> {
        let mut inner = self.inner();
        if inner.ended {
            return Err(QueueError::Closed);
        }
        if inner.close_asked {
            return Ok(());
        }
        inner.close_asked = true;
        inner.close = Some((code, reason));
        inner.wake_session();
        Ok(())
    }

    // --------------------------------------------------- the session's side

    /// The session's waker, woken by whatever the app does.
    pub fn register_session(&self, waker: &Waker) {
        let mut inner = self.inner();
        if !inner.session.as_ref().is_some_and(|known| known.will_wake(waker)) {
            inner.session = Some(waker.clone());
        }
    }

    /// Whether the app's queue has room for another event (if not, the
    /// session is woken when it has).
    pub fn has_room(&self) -> bool {
        let mut inner = self.inner();
        let room = inner.to_app.len() < CAPACITY;
        inner.room_wanted = !room;
        room
    }

    /// Hands an event to the app (the caller checked for room: the queue
    /// may overrun by a close, never by messages).
    pub fn deliver(&self, event: WsEvent) {
        let mut inner = self.inner();
        inner.to_app.push_back(event);
        let app = inner.app.take();
        drop(inner);
        if let Some(app) = app {
            app.wake();
        }
    }

    /// The app's next message for the client, if any.
    pub fn next_outgoing(&self) -> Option<WsOutgoing> {
        let mut inner = self.inner();
        let message = inner.to_client.pop_front()?;
        let app = inner.app.take();
        drop(inner);
        // Room again: an app waiting to send may.
        if let Some(app) = app {
            app.wake();
        }
        Some(message)
    }

    /// The close the app asked for, once.
    pub fn take_close(&self) -> Option<(u16, String)> {
        self.inner().close.take()
    }

    /// The session ended: the app's next receive gets what is left then
    /// `Gone`, and its sends fail.
    pub fn end(&self) {
        let mut inner = self.inner();
        inner.ended = true;
        inner.to_client.clear();
        let app = inner.app.take();
        drop(inner);
        if let Some(app) = app {
            app.wake();
        }
    }
}

impl Inner {
    /// Wakes the session (its waker only marks a bit and schedules its
    /// task: safe under the lock).
    fn wake_session(&self) {
        if let Some(session) = &self.session {
            session.wake_by_ref();
        }
    }

    /// Keeps the app's waker for the next event or room.
    fn app_waits(&mut self, waker: &Waker) {
        if !self.app.as_ref().is_some_and(|known| known.will_wake(waker)) {
            self.app = Some(waker.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    fn text(s: &str) -> WsOutgoing {
        WsOutgoing::Text(s.to_owned())
    }

    #[test]
    fn messages_flow_both_ways_and_wake_the_side_that_waits() {
        let queues = Queues::default();
        let (app_woken, app) = waker();
        let (session_woken, session) = waker();
        queues.register_session(&session);
        assert!(queues.poll_recv(&mut Context::from_waker(&app)).is_pending());
        queues.deliver(WsEvent::Text("hi".into()));
        assert_eq!(app_woken.0.load(Ordering::SeqCst), 1);
        assert!(matches!(queues.poll_recv(&mut Context::from_waker(&app)), Poll::Ready(WsEvent::Text(t)) if t == "hi"));
        assert_eq!(
            session_woken.0.load(Ordering::SeqCst),
            0,
            "the session did not wait for room"
        );
        queues.send(text("back")).unwrap();
        assert_eq!(session_woken.0.load(Ordering::SeqCst), 1);
        assert!(matches!(queues.next_outgoing(), Some(WsOutgoing::Text(t)) if t == "back"));
        assert!(queues.next_outgoing().is_none());
    }

    #[test]
    fn a_session_waiting_for_room_is_woken_when_the_app_takes_a_message() {
        let queues = Queues::default();
        let (session_woken, session) = waker();
        let (_, app) = waker();
        queues.register_session(&session);
        for _ in 0..CAPACITY {
            assert!(queues.has_room());
            queues.deliver(WsEvent::Text("x".into()));
        }
        assert!(!queues.has_room());
        assert!(queues.poll_recv(&mut Context::from_waker(&app)).is_ready());
        assert_eq!(session_woken.0.load(Ordering::SeqCst), 1);
        assert!(queues.has_room());
    }

    #[test]
    fn a_full_queue_makes_the_app_wait_and_refuses_a_send_not_awaited() {
        let queues = Queues::default();
        let (app_woken, app) = waker();
        for _ in 0..CAPACITY {
            assert!(queues.poll_send_ready(&mut Context::from_waker(&app)).is_ready());
            queues.send(text("x")).unwrap();
        }
        assert!(queues.poll_send_ready(&mut Context::from_waker(&app)).is_pending());
        assert_eq!(queues.send(text("y")), Err(QueueError::Full));
        queues.next_outgoing();
        assert_eq!(app_woken.0.load(Ordering::SeqCst), 1, "room wakes the app");
        assert!(queues.poll_send_ready(&mut Context::from_waker(&app)).is_ready());
    }

    #[test]
    fn after_the_end_the_app_drains_then_gets_gone_and_its_sends_fail() {
        let queues = Queues::default();
        let (_, app) = waker();
        queues.deliver(WsEvent::Text("last".into()));
        queues.close(1000, String::new()).unwrap();
        assert_eq!(queues.take_close(), Some((1000, String::new())));
        assert_eq!(queues.close(1001, String::new()), Ok(()), "a second close is a no-op");
        assert_eq!(queues.take_close(), None);
        queues.end();
        let mut cx = Context::from_waker(&app);
        assert!(matches!(queues.poll_recv(&mut cx), Poll::Ready(WsEvent::Text(_))));
        assert!(matches!(queues.poll_recv(&mut cx), Poll::Ready(WsEvent::Gone)));
        assert_eq!(queues.send(text("late")), Err(QueueError::Closed));
        assert_eq!(queues.close(1000, String::new()), Err(QueueError::Closed));
        assert_eq!(queues.poll_send_ready(&mut cx), Poll::Ready(Err(QueueError::Closed)));
    }
}
