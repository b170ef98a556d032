//! `probe http://127.0.0.1:8080/ready`: exits 0 when the URL answers 2xx within the timeout,
//! 1 otherwise. The container health check: the images have no shell or curl.

use std::{process::ExitCode, time::Duration};

use clap::Parser;

/// The probe's whole configuration.
#[derive(Debug, Parser)]
#[command(version, about = "Health check: GET a URL, exit 0 on 2xx")]
struct Config {
    /// The URL to GET.
    url: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3_000)]
    timeout_ms: u64,
}

fn main() -> ExitCode {
    let config = Config::parse();
    // reqwest is built without a TLS provider of its own; the workspace's is ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(config.timeout_ms))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(&config.url).send() {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("probe: {} answered {}", config.url, response.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("probe: {}: {e}", config.url);
            ExitCode::FAILURE
        }
    }
}
