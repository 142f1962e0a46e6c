//! [`export_app!`](crate::export_app): one line that makes an app loadable.

/// Exports an app under a symbol name, as an abi_stable-checked root module.
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
        const _: () = {
            use $crate::__private as __sabi;

            static __EXPORT_APP_SLOT: __sabi::AppSlot = __sabi::AppSlot::new();

            fn __export_app_make() -> ::std::boxed::Box<dyn $crate::App> {
                ::std::boxed::Box::new($app)
            }

            extern "C" fn __export_app_init(host: __sabi::HostServices) -> __sabi::RResult<(), __sabi::RString> {
                __sabi::init(&__EXPORT_APP_SLOT, __export_app_make, host)
            }

            extern "C" fn __export_app_call<'a>(
                environ: &'a __sabi::RawEnviron<'a>,
                gateway: __sabi::GatewayRef<'a>,
            ) -> __sabi::RawOutcome {
                __sabi::call(&__EXPORT_APP_SLOT, environ, gateway)
            }

            fn __export_app_module() -> __sabi::AppModule_Ref {
                const MODULE: &__sabi::WithMetadata<__sabi::AppModule> =
                    &__sabi::WithMetadata::new(__sabi::AppModule {
                        init: __export_app_init,
                        call: __export_app_call,
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
