//! Loads an interactions CSV and prints how long each step took: `cargo run --release --example
//! load_csv -- FILE`.

use std::time::Instant;

#[global_allocator]
static ALLOCATOR: hrnn_core::huge_pages::HugePageAlloc = hrnn_core::huge_pages::HugePageAlloc;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: load_csv FILE");
        std::process::exit(2);
    };
    let started = Instant::now();
    match hrnn_core::csv_reader::read_csv(path.as_ref()) {
        Ok(data) => {
            let read = started.elapsed();
            let started = Instant::now();
            let filtered = hrnn_core::history_filter::filter_by_history_length(&data, 0.05, 0.99)
                .expect("valid percentiles");
            println!(
                "filter kept {} rows in {:.3} s",
                filtered.len(),
                started.elapsed().as_secs_f64()
            );
            let started = Instant::now();
            let sessions = hrnn_core::sessionize(&data, 1800).expect("valid timeout");
            println!(
                "{} rows, {} users, {} items: read {:.3} s; {} sessions in {:.3} s",
                data.len(),
                data.num_users(),
                data.num_items(),
                read.as_secs_f64(),
                sessions.num_sessions,
                started.elapsed().as_secs_f64()
            );
        }
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    }
}
