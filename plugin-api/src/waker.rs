//! std wakers to [`FfiWaker`]s and back, for both sides of the boundary
//! (each library compiles its own copy of these vtables, and recognises
//! its own by address).
//!
//! A poll lends its waker across without an allocation: [`lend`] makes a
//! borrowed `FfiWaker` of a std `Waker`, and [`with_waker`] a borrowed std
//! `Waker` of an `FfiWaker`. Only a waker someone keeps (a timer or socket
//! registering interest) is cloned into an owned copy. A waker that comes
//! back to the side that made it (the host's waker, lent to the app, lent
//! back to the host's body read) is unwrapped instead of wrapped again.
//! None of the functions here unwinds across the boundary.

use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::task::{RawWaker, RawWakerVTable, Waker};

use crate::abi::{FfiWaker, FfiWakerVTable};

// ------------------------------------------------ std Waker as FfiWaker

/// An `FfiWaker` lending a `&Waker` (data: `*const Waker`).
static LENT_STD: FfiWakerVTable = FfiWakerVTable {
    clone: std_clone,
    wake_by_ref: std_wake_by_ref,
    drop: nothing,
};

/// An `FfiWaker` owning a `Box<Waker>` (data: its raw pointer).
static OWNED_STD: FfiWakerVTable = FfiWakerVTable {
    clone: std_clone,
    wake_by_ref: std_wake_by_ref,
    drop: std_drop,
};

/// Does nothing whatever the waker (the fallback of a failed clone).
static INERT: FfiWakerVTable = FfiWakerVTable {
    clone: inert_clone,
    wake_by_ref: nothing,
    drop: nothing,
};

extern "C" fn std_clone(data: *const ()) -> FfiWaker {
    // SAFETY: `data` is the `*const Waker` of a LENT_STD or OWNED_STD waker,
    // valid while the FfiWaker is (the caller holds it).
    let waker = unsafe { &*data.cast::<Waker>() };
    match panic::catch_unwind(AssertUnwindSafe(|| Box::new(waker.clone()))) {
        Ok(owned) => FfiWaker {
            data: Box::into_raw(owned).cast(),
            vtable: &OWNED_STD,
        },
        Err(_) => inert(),
    }
}

extern "C" fn std_wake_by_ref(data: *const ()) {
    // SAFETY: as in `std_clone`.
    let waker = unsafe { &*data.cast::<Waker>() };
    let _ = panic::catch_unwind(AssertUnwindSafe(|| waker.wake_by_ref()));
}

extern "C" fn std_drop(data: *const ()) {
    // SAFETY: an OWNED_STD waker's data is a `Box<Waker>` made in
    // `std_clone`, dropped once (the FfiWaker contract).
    let owned = unsafe { Box::from_raw(data.cast::<Waker>().cast_mut()) };
    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(owned)));
}

extern "C" fn nothing(_: *const ()) {}

extern "C" fn inert_clone(_: *const ()) -> FfiWaker {
    inert()
}

fn inert() -> FfiWaker {
    FfiWaker {
        data: std::ptr::null(),
        vtable: &INERT,
    }
}

/// Runs `f` with an `FfiWaker` that lends `waker` for the call; a waker
/// that is one of ours wrapping a foreign `FfiWaker` lends that one back.
pub fn lend<R>(waker: &Waker, f: impl FnOnce(&FfiWaker) -> R) -> R {
    let wraps_foreign = std::ptr::eq(waker.vtable(), &LENT_FFI) || std::ptr::eq(waker.vtable(), &OWNED_FFI);
    if wraps_foreign {
        // SAFETY: the data of LENT_FFI and OWNED_FFI wakers is a valid
        // `*const FfiWaker` while the Waker lives, which outlives `f`.
        return f(unsafe { &*waker.data().cast::<FfiWaker>() });
    }
    f(&FfiWaker {
        data: (waker as *const Waker).cast(),
        vtable: &LENT_STD,
    })
}

// ------------------------------------------------ FfiWaker as std Waker

/// A std `Waker` borrowing an `&FfiWaker` (data: `*const FfiWaker`).
static LENT_FFI: RawWakerVTable = RawWakerVTable::new(ffi_clone, ffi_wake_lent, ffi_wake_by_ref, ffi_drop_lent);

/// A std `Waker` owning a `Box<FfiWaker>` (an owned copy).
static OWNED_FFI: RawWakerVTable = RawWakerVTable::new(ffi_clone, ffi_wake_owned, ffi_wake_by_ref, ffi_drop_owned);

/// The `FfiWaker` behind a LENT_FFI or OWNED_FFI waker's data.
///
/// # Safety
/// `data` is such a waker's data, and that waker is alive.
unsafe fn ffi<'a>(data: *const ()) -> &'a FfiWaker {
    // SAFETY: the caller's promise.
    unsafe { &*data.cast::<FfiWaker>() }
}

unsafe fn ffi_clone(data: *const ()) -> RawWaker {
    // SAFETY: std calls this with the data of a live LENT_FFI/OWNED_FFI waker.
    let ffi = unsafe { ffi(data) };
    let owned = Box::new((ffi.vtable.clone)(ffi.data));
    RawWaker::new(Box::into_raw(owned).cast(), &OWNED_FFI)
}

unsafe fn ffi_wake_by_ref(data: *const ()) {
    // SAFETY: as in `ffi_clone`.
    let ffi = unsafe { ffi(data) };
    (ffi.vtable.wake_by_ref)(ffi.data);
}

unsafe fn ffi_wake_lent(data: *const ()) {
    // SAFETY: as in `ffi_clone`; a lent waker owns nothing to release.
    unsafe { ffi_wake_by_ref(data) }
}

unsafe fn ffi_drop_lent(_: *const ()) {}

unsafe fn ffi_wake_owned(data: *const ()) {
    // SAFETY: as in `ffi_clone`; then the waker is consumed.
    unsafe {
        ffi_wake_by_ref(data);
        ffi_drop_owned(data);
    }
}

unsafe fn ffi_drop_owned(data: *const ()) {
    // SAFETY: an OWNED_FFI waker's data is the `Box<FfiWaker>` made in
    // `ffi_clone`, released once, here.
    let owned = unsafe { Box::from_raw(data.cast::<FfiWaker>().cast_mut()) };
    (owned.vtable.drop)(owned.data);
}

/// Runs `f` with a std `Waker` that borrows `ffi` for the call; an
/// `FfiWaker` that is one of ours lending a std `Waker` gives that one back.
pub fn with_waker<R>(ffi: &FfiWaker, f: impl FnOnce(&Waker) -> R) -> R {
    if std::ptr::eq(ffi.vtable, &LENT_STD) || std::ptr::eq(ffi.vtable, &OWNED_STD) {
        // SAFETY: the data of our LENT_STD and OWNED_STD FfiWakers is a
        // valid `*const Waker` while the FfiWaker lives, which outlives `f`.
        return f(unsafe { &*ffi.data.cast::<Waker>() });
    }
    // SAFETY: LENT_FFI's functions only read through the pointer, which
    // outlives the waker (dropped as ManuallyDrop, never through std).
    let waker =
        ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new((ffi as *const FfiWaker).cast(), &LENT_FFI)) });
    f(&waker)
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

    /// The vtable of "another library": the same functions at another
    /// address, so this one's conversions take it for a foreign waker.
    static FOREIGN: FfiWakerVTable = FfiWakerVTable {
        clone: foreign_clone,
        wake_by_ref: std_wake_by_ref,
        drop: std_drop,
    };

    extern "C" fn foreign_clone(data: *const ()) -> FfiWaker {
        FfiWaker {
            vtable: &FOREIGN,
            ..std_clone(data)
        }
    }

    /// An owned foreign FfiWaker of a waker counting its wakes.
    fn foreign(count: &Arc<Count>) -> (Waker, FfiWaker) {
        let std = Waker::from(count.clone());
        let made = foreign_clone((&std as *const Waker).cast());
        (std, made)
    }

    #[test]
    fn a_waker_lent_across_and_back_is_the_same_waker() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        lend(&waker, |ffi| {
            with_waker(ffi, |back| {
                assert!(back.will_wake(&waker), "unwrapped, not wrapped again");
                back.wake_by_ref();
            });
        });
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn clones_kept_past_the_call_wake_and_release() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let (_std, owned) = foreign(&count);
        assert_eq!(Arc::strong_count(&count), 3, "the owned copy holds the waker");
        // The app side keeps a std clone of the lent FfiWaker, then wakes it.
        let kept = with_waker(&owned, |waker| waker.clone());
        kept.wake_by_ref();
        lend(&kept, |again| (again.vtable.wake_by_ref)(again.data));
        drop(kept);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        (owned.vtable.drop)(owned.data);
        assert_eq!(Arc::strong_count(&count), 2, "every copy released");
    }
}
