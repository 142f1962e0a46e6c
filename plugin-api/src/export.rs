//! [`export_app!`](crate::export_app) and
//! [`export_async_app!`](crate::export_async_app): one line that makes an
//! app loadable.

/// Exports a sync app under a symbol name, as an abi_stable-checked root
/// module.
///
/// - `export_app!(application);` exports the function `application` under
///   the symbol `application` (the host's `libname:application`).
/// - `export_app!(run = serve_files);` exports the function `serve_files`
///   under the symbol `run`.
/// - `export_app!(application = Counter::new());` exports a stateful app:
///   the expression is evaluated once, when the host loads the library.
///
/// The value must implement [`App`](crate::App). Panics in the app, its
/// constructor, its body stream and its `Drop` are caught and reported to the
/// host, which answers 500 and keeps serving.
#[macro_export]
macro_rules! export_app {
    ($symbol:ident) => {
        $crate::export_app!($symbol = $symbol);
    };
    ($symbol:ident = $app:expr) => {
        $crate::__export_module! {
            symbol: $symbol,
            kind: dyn $crate::App,
            make: $app,
            call: |slot, environ, gateway| $crate::__private::call(slot, environ, gateway),
            call_async: None,
        }
    };
}

/// Exports an async app (since plugin-api 1.2) under a symbol name, as
/// [`export_app!`] does a sync one.
///
/// - `export_async_app!(application);` exports the async function
///   `application` (`async fn(Request) -> Result<(), E>`).
/// - `export_async_app!(async_application = handle);` under another name.
/// - `export_async_app!(application = Chat::new());` exports a stateful
///   app (implement [`AsyncApp`](crate::AsyncApp)).
///
/// Panics in the app's future (polled or dropped) are caught: the host
/// answers 500 if the response had not started, else ends it early.
#[macro_export]
macro_rules! export_async_app {
    ($symbol:ident) => {
        $crate::export_async_app!($symbol = $symbol);
    };
    ($symbol:ident = $app:expr) => {
        $crate::__export_module! {
            symbol: $symbol,
            kind: dyn $crate::AsyncApp,
            make: $app,
            call: |_, _, _| $crate::__private::call_sync_refused(),
            call_async: Some({
                extern "C" fn __export_app_call_async(
                    gateway: $crate::__private::SharedAsyncGateway,
                ) -> $crate::__private::BoxedAppFuture {
                    $crate::__private::call_async(&__EXPORT_APP_SLOT, gateway)
                }
                __export_app_call_async
            }),
        }
    };
}

/// The root module both export macros make; not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_module {
    (
        symbol: $symbol:ident,
        kind: $kind:ty,
        make: $app:expr,
        call: |$slot:pat_param, $environ:pat_param, $gateway:pat_param| $call:expr,
        call_async: $call_async:expr,
    ) => {
        const _: () = {
            use $crate::__private as __sabi;

            static __EXPORT_APP_SLOT: __sabi::AppSlot<$kind> = __sabi::AppSlot::new();

            fn __export_app_make() -> ::std::boxed::Box<$kind> {
                ::std::boxed::Box::new($app)
            }

            extern "C" fn __export_app_init(host: __sabi::HostServices) -> __sabi::RResult<(), __sabi::RString> {
                __sabi::init(&__EXPORT_APP_SLOT, __export_app_make, host)
            }

            extern "C" fn __export_app_call<'a>(
                environ: &'a __sabi::RawEnviron<'a>,
                gateway: __sabi::GatewayRef<'a>,
            ) -> __sabi::RawOutcome {
                let ($slot, $environ, $gateway) = (&__EXPORT_APP_SLOT, environ, gateway);
                $call
            }

            extern "C" fn __export_app_shutdown() {
                __sabi::shutdown()
            }

            fn __export_app_module() -> __sabi::AppModule_Ref {
                const MODULE: &__sabi::WithMetadata<__sabi::AppModule> =
                    &__sabi::WithMetadata::new(__sabi::AppModule {
                        init: __export_app_init,
                        call: __export_app_call,
                        call_async: $call_async,
                        shutdown: __export_app_shutdown,
                    });
                __sabi::AppModule_Ref(MODULE.static_as_prefix())
            }

            extern "C" fn __export_app_construct() -> __sabi::RootModuleResult {
                __sabi::__call_root_module_loader(__export_app_module)
            }

            /// The abi_stable header the host looks up by the symbol name.
            #[export_name = stringify!($symbol)]
            pub static __EXPORT_APP_HEADER: __sabi::LibHeader = unsafe {
                // SAFETY: `__export_app_construct` returns the `PrefixRef` of
                // an `AppModule_Ref`, the module type named here.
                __sabi::LibHeader::from_constructor::<__sabi::AppModule_Ref>(
                    __export_app_construct,
                    __sabi::CheckTypeLayout::Yes,
                )
            };
        };
    };
}
