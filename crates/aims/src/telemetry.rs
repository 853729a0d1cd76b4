//! Prometheus metrics (`GET /metrics`, text exposition format) on a plain-HTTP listener of its
//! own, off unless `--metrics-listen` or `[telemetry] metrics_listen` names an address: the
//! library crates record through the `metrics` facade, this process installs the recorder.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Latency buckets, seconds: 100 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// Installs the recorder and serves `/metrics` on `addr`; returns its URL.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .context("metric buckets")?
        .install_recorder()
        .context("install the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics: listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    let url = format!("http://{bound}/metrics");
    tracing::info!(%url, "Prometheus metrics");
    Ok(url)
}

/// An OpenTelemetry layer exporting spans by OTLP/gRPC to `endpoint` (a collector such as
/// `http://127.0.0.1:4317`), batched every second, as service `aims`; W3C Trace Context is the
/// propagation format. The provider must be shut down at exit to flush what is queued.
pub fn otel_layer<S>(
    endpoint: &str,
) -> anyhow::Result<(
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    opentelemetry_sdk::trace::SdkTracerProvider,
)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .context("OTLP exporter")?;
    let batch = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_secs(1))
                .build(),
        )
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("aims")
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let tracer = provider.tracer("aims");
    Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
}

/// Starts the metrics listener if the flags or the file name an address.
pub async fn start(
    flags: &crate::config::CommonFlags,
    file: &crate::config::FileConfig,
) -> anyhow::Result<Option<String>> {
    match flags.metrics_listen.or(file.telemetry.metrics_listen) {
        Some(addr) => Ok(Some(serve(addr).await?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[tokio::test]
    async fn counters_and_histograms_render() {
        let url = super::serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        metrics::counter!("t_total", "outcome" => "x").increment(2);
        metrics::histogram!("t_seconds").record(0.003);
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        assert!(text.contains("t_total{outcome=\"x\"} 2"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"0.005\"} 1"), "{text}");
    }
}
