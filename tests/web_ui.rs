//! placeholder
mod common;
#[test]
fn placeholder() {
    let _ = fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
}
