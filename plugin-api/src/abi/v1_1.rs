//! The types of interface 1.1 that later minors changed, frozen: a 1.1
//! plugin is checked against these and called through them. (The types no
//! minor changed since are shared.) Never edit this module.

use super::*;

/// [`super::Gateway`] as 1.1 had it: the file body, no extra variables.
#[sabi_trait]
pub trait Gateway {
    /// See [`super::Gateway::start_response`].
    fn start_response(
        &self,
        status: RStr<'_>,
        headers: RSlice<'_, RawHeader<'_>>,
        exc_info: ROption<RStr<'_>>,
    ) -> RResult<(), RString>;

    /// See [`super::Gateway::write`].
    fn write(&self, data: RSlice<'_, u8>) -> RResult<(), RString>;

    /// See [`super::Gateway::read_input`].
    #[sabi(last_prefix_field)]
    fn read_input(&self, buf: RSliceMut<'_, u8>) -> RResult<usize, RString>;

    /// See [`super::Gateway::send_file`].
    fn send_file(&self, fd: i32, offset: u64, len: u64) -> RResult<(), RString>;
}

/// [`super::AppModule`] as 1.1 had it: `call` gets a 1.1 gateway, and
/// there are no async apps.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = AppModule_Ref)))]
#[sabi(missing_field(panic))]
pub struct AppModule {
    /// See [`super::AppModule::init`].
    pub init: extern "C" fn(host: HostServices) -> RResult<(), RString>,

    /// See [`super::AppModule::call`].
    #[sabi(last_prefix_field)]
    pub call: for<'a> extern "C" fn(
        environ: &'a RawEnviron<'a>,
        gateway: Gateway_TO<'a, abi_stable::sabi_types::RRef<'a, ()>>,
    ) -> RawOutcome,
}

impl RootModule for AppModule_Ref {
    declare_root_module_statics! {AppModule_Ref}
    const BASE_NAME: &'static str = "plugin_app";
    const NAME: &'static str = "plugin-api app";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.1.0");
}
