//! Conversions between [`crate::api`] and the bindings generated from `wit/scheduler.wit`.
//!
//! Both sides of the boundary have generated types with the same names and fields as `api`:
//! the guest's (wit-bindgen, `component.rs`) and the host's (wasmtime `bindgen!`,
//! `hamr::runtime`). These macros write the field-by-field conversions once for both, so a
//! field added to the WIT and not to `api` (or the reverse) is a compile error on each side.

/// Converts a value into its counterpart on the other side of the boundary.
pub trait Cv<U> {
    fn cv(self) -> U;
}

macro_rules! identity {
    ($($t:ty),*) => {
        $(impl Cv<$t> for $t {
            fn cv(self) -> $t {
                self
            }
        })*
    };
}
identity!(String, bool, u32, i32, u64, i64, (String, String));

impl<T: Cv<U>, U> Cv<Vec<U>> for Vec<T> {
    fn cv(self) -> Vec<U> {
        self.into_iter().map(Cv::cv).collect()
    }
}

impl<T: Cv<U>, U> Cv<Option<U>> for Option<T> {
    fn cv(self) -> Option<U> {
        self.map(Cv::cv)
    }
}

/// `cv_struct!(From => To { field, ... })`: a record converted field by field (struct syntax).
#[macro_export]
macro_rules! cv_struct {
    ($from:ty => $to:ident $(:: $rest:ident)* { $($f:ident),* $(,)? }) => {
        impl $crate::convert::Cv<$to $(:: $rest)*> for $from {
            #[allow(unused_imports)] // records of plain fields need no conversion trait
            fn cv(self) -> $to $(:: $rest)* {
                use $crate::convert::Cv as _;
                $to $(:: $rest)* { $($f: self.$f.cv()),* }
            }
        }
    };
}

/// `cv_enum!(From => To { Unit, Payload(x), ... })`: variants by name, payloads converted.
#[macro_export]
macro_rules! cv_enum {
    ($from:ty => $to:ty { $($v:ident $(($p:ident))?),* $(,)? }) => {
        impl $crate::convert::Cv<$to> for $from {
            #[allow(unused_imports)]
            fn cv(self) -> $to {
                use $crate::convert::Cv as _;
                type F = $from;
                type T = $to;
                match self {
                    $(F::$v $(($p))? => T::$v $(($p.cv()))?),*
                }
            }
        }
    };
}

/// All conversions of the contract, for generated types living in module path `$w` (the
/// `types` interface) and `$s` (the `scheduler` interface, which holds `reservation`).
#[macro_export]
macro_rules! cv_contract {
    ($w:path, $s:path) => {
        mod __cv_contract {
            use $crate::api as a;
            use $w as w;
            #[allow(unused_imports)]
            use $s as s;
            // Inputs: generated -> api.
            $crate::cv_struct!(w::Container => a::Container { name, limits, requests, privileged, env_names });
            $crate::cv_struct!(w::ContainerStatus => a::ContainerStatus { name, terminated_exit_code });
            $crate::cv_enum!(w::PodPhase => a::PodPhase { Pending, Running, Succeeded, Failed, Unknown });
            $crate::cv_struct!(w::Pod => a::Pod { uid, namespace, name, labels, annotations, scheduler_name, node_name, runtime_class_name, phase, deleting, init_containers, containers, init_container_statuses });
            $crate::cv_struct!(w::Node => a::Node { name, labels, annotations, allocatable, capacity });
            $crate::cv_struct!(w::Quota => a::Quota { namespace, name, hard });
            $crate::cv_enum!(w::Delta => a::Delta { NodeUpsert(x), NodeRemove(x), PodUpsert(x), PodRemove(x), QuotaUpsert(x), QuotaRemove(x) });
            // The same inputs api -> generated (the host sends them).
            $crate::cv_struct!(a::Container => w::Container { name, limits, requests, privileged, env_names });
            $crate::cv_struct!(a::ContainerStatus => w::ContainerStatus { name, terminated_exit_code });
            $crate::cv_enum!(a::PodPhase => w::PodPhase { Pending, Running, Succeeded, Failed, Unknown });
            $crate::cv_struct!(a::Pod => w::Pod { uid, namespace, name, labels, annotations, scheduler_name, node_name, runtime_class_name, phase, deleting, init_containers, containers, init_container_statuses });
            $crate::cv_struct!(a::Node => w::Node { name, labels, annotations, allocatable, capacity });
            $crate::cv_struct!(a::Quota => w::Quota { namespace, name, hard });
            $crate::cv_enum!(a::Delta => w::Delta { NodeUpsert(x), NodeRemove(x), PodUpsert(x), PodRemove(x), QuotaUpsert(x), QuotaRemove(x) });
            // Outputs, both ways.
            $crate::cv_contract!(@both a, w, s);
        }
    };
    (@both $a:ident, $w:ident, $s:ident) => {
        $crate::cv_contract!(@out $a, $w, $s);
        $crate::cv_contract!(@out $w, $a, $s);
        $crate::cv_enum!($s::Reservation => $a::Reservation { Reserved(x), Rejected(x) });
        $crate::cv_enum!($a::Reservation => $s::Reservation { Reserved(x), Rejected(x) });
    };
    (@out $x:ident, $y:ident, $s:ident) => {
        $crate::cv_struct!($x::Invalid => $y::Invalid { object, field, value, message });
        $crate::cv_enum!($x::Error => $y::Error { InvalidInput(x), InvalidConfig(x), NotFound(x), Other(x) });
        $crate::cv_struct!($x::DeltaError => $y::DeltaError { index, error });
        $crate::cv_enum!($x::Code => $y::Code { Success, Unschedulable, UnschedulableAndUnresolvable });
        $crate::cv_struct!($x::ReasonCount => $y::ReasonCount { reason, count, total });
        $crate::cv_struct!($x::NodeVerdict => $y::NodeVerdict { node, code, reason, counts, score });
        $crate::cv_struct!($x::DeviceGrant => $y::DeviceGrant { container, vendor, uuid, index, model, memory_mib, cores });
        $crate::cv_struct!($x::Decision => $y::Decision { node, annotations, labels, grants });
        $crate::cv_struct!($x::NodeFailure => $y::NodeFailure { code, reason, counts });
        $crate::cv_enum!($x::CandidateOutcome => $y::CandidateOutcome { Fits(x), Fails(x) });
        $crate::cv_struct!($x::CandidateVerdict => $y::CandidateVerdict { candidate, outcome });
        $crate::cv_struct!($x::FilterOutcome => $y::FilterOutcome { managed, failures, verdicts, decision });
        $crate::cv_struct!($x::NodeScore => $y::NodeScore { node, score });
        $crate::cv_struct!($x::ContainerRef => $y::ContainerRef { init, index });
        $crate::cv_struct!($x::ContainerLimit => $y::ContainerLimit { container, name, value });
        $crate::cv_struct!($x::ContainerEnv => $y::ContainerEnv { container, name, value });
        $crate::cv_enum!($x::Mutation => $y::Mutation { SetSchedulerName(x), SetRuntimeClassName(x), SetLimit(x), AddEnv(x), SetRequest(x), SetAnnotation(x) });
        $crate::cv_struct!($x::Admission => $y::Admission { allowed, message, mutations, managed });
        $crate::cv_struct!($x::CardCheck => $y::CardCheck { container, vendor, uuid, index, reason, detail });
        $crate::cv_struct!($x::NodeExplanation => $y::NodeExplanation { node, verdict, cards });
        $crate::cv_struct!($x::CardUsage => $y::CardUsage { vendor, uuid, index, model, healthy, cordoned, numa, used_slots, total_slots, used_memory_mib, total_memory_mib, used_cores, total_cores });
        $crate::cv_struct!($x::NodeUsage => $y::NodeUsage { node, live, cards });
        $crate::cv_struct!($x::QuotaUsage => $y::QuotaUsage { namespace, resource_name, used, limit });
        $crate::cv_struct!($x::NodeHandshake => $y::NodeHandshake { node, annotations, stale });
    };
}
