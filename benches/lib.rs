//! Shared helpers for the benchmarks: timing, the raw cipher baseline, table printing.

use std::time::{Duration, Instant};

/// MiB/s of `bytes` moved in `elapsed`.
pub fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

/// Raw `ring` AES-256-GCM seal and open throughput (MiB/s) over 1 MiB buffers for about
/// `budget`: the ceiling our data path is compared with.
pub fn raw_aes_gcm(budget: Duration) -> (f64, f64) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key"));
    let mut buf = vec![0x5au8; 1 << 20];
    let mut n = 0u64;
    let start = Instant::now();
    let mut tags = Vec::new();
    while start.elapsed() < budget {
        let nonce = Nonce::assume_unique_for_key([(n % 251) as u8; 12]);
        tags.push(
            key.seal_in_place_separate_tag(nonce, Aad::empty(), &mut buf)
                .expect("seal"),
        );
        n += 1;
    }
    let seal = mib_per_s(n << 20, start.elapsed());
    // Open what the last seal produced, repeatedly (re-sealing in between is not measured).
    let nonce_for = |i: u64| Nonce::assume_unique_for_key([(i % 251) as u8; 12]);
    let tag = tags.pop().expect("at least one seal");
    let last = n - 1;
    let mut sealed = buf.clone();
    sealed.extend_from_slice(tag.as_ref());
    let mut m = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        let mut work = sealed.clone();
        key.open_in_place(nonce_for(last), Aad::empty(), &mut work)
            .expect("open");
        m += 1;
    }
    let open = mib_per_s(m << 20, start.elapsed());
    (seal, open)
}

/// Prints a Markdown table.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    println!("| {} |", header.join(" | "));
    println!(
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}
