//! Bundle export: the latest version of every object of a collection as one STIX 2.1 bundle,
//! streamed page by page so a large collection never sits in memory whole.

use std::io::Write;

use crate::{
    error::Error,
    store::{Query, Store, VersionMatch},
};

/// Objects read per page while exporting.
const EXPORT_PAGE: usize = 1000;

/// Writes `{"type":"bundle","id":…,"objects":[…]}` with the latest version of every object in
/// `collection`, in the order they were added; returns the number of objects written.
pub async fn export_bundle(store: &Store, collection: &str, out: &mut (impl Write + Send)) -> Result<usize, Error> {
    let id = format!("bundle--{}", uuid::Uuid::new_v4());
    write!(out, "{{\"type\":\"bundle\",\"id\":\"{id}\",\"objects\":[")?;
    let mut query = Query {
        versions: vec![VersionMatch::Last],
        limit: EXPORT_PAGE,
        ..Default::default()
    };
    let mut written = 0usize;
    loop {
        let page = store.query(collection, &query).await?;
        for record in &page.records {
            if written > 0 {
                out.write_all(b",")?;
            }
            out.write_all(b"\n")?;
            out.write_all(record.body.as_bytes())?;
            written += 1;
        }
        match page.records.last() {
            Some(last) if page.more => query.after_seq = last.seq,
            _ => break,
        }
    }
    out.write_all(b"\n]}\n")?;
    out.flush()?;
    Ok(written)
}
