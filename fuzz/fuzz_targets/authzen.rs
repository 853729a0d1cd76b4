//! AuthZEN evaluation requests (Authorization API 1.0 §6) as the PDP answers them: a decision
//! or a 400, never a panic, under the default policy.
#![no_main]

use std::sync::OnceLock;

use aims_policy::authzen::{EvaluationRequest, evaluate};
use aims_policy::{Pdp, PolicyDocument};
use libfuzzer_sys::fuzz_target;

const POLICY: &str = include_str!("../../crates/aims-policy/cedar/default.cedar");

fn pdp() -> &'static Pdp {
    static PDP: OnceLock<Pdp> = OnceLock::new();
    PDP.get_or_init(|| Pdp::new(&PolicyDocument::new(1, POLICY)).expect("the default policy"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<EvaluationRequest>(data) {
        let _ = evaluate(pdp(), &request, 1_700_000_000);
    }
});
