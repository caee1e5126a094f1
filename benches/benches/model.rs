//! berth-model's operations, so that the harness's own speed is tracked: the
//! merged view of a layer stack and commit's diff, a container's writes, and
//! address allocation in a /16 (no root needed).

use std::net::Ipv4Addr;

use berth_model::network::{Mode, Networks, Subnet};
use berth_model::union::{Body, Container, Entry, Layer, Node, diff, merged};
use criterion::{Criterion, criterion_group, criterion_main};

/// Layer `k` of a stack: 200 files in 20 directories, and a whiteout of one
/// file of the layer below.
fn layer(k: usize) -> Layer {
    let mut l = Vec::new();
    for i in 0..200 {
        l.push(Entry {
            name: format!("d{}/f{k}_{i}", i % 20),
            body: Body::Node(Node::file(format!("{k}:{i}"), 0o644)),
        });
    }
    if k > 0 {
        l.push(Entry {
            name: format!("d0/.wh.f{}_0", k - 1),
            body: Body::Node(Node::file(Vec::new(), 0)),
        });
    }
    l
}

fn union(c: &mut Criterion) {
    let layers: Vec<Layer> = (0..10).map(layer).collect();
    let mut g = c.benchmark_group("model_union");
    g.bench_function("merged view of 10 layers x 200 files", |b| {
        b.iter(|| merged(std::hint::black_box(&layers)).expect("valid layers"))
    });
    let lower = merged(&layers).expect("valid layers");
    g.bench_function("100 container writes + view", |b| {
        b.iter(|| {
            let mut ct = Container::new(lower.clone());
            for i in 0..100 {
                ct.write(&format!("d{}/new{i}", i % 20), b"x")
                    .expect("write");
            }
            ct.view()
        })
    });
    let mut ct = Container::new(lower.clone());
    for i in 0..100 {
        ct.write(&format!("d{}/new{i}", i % 20), b"x")
            .expect("write");
        ct.remove(&format!("d{}/f9_{i}", i % 20)).expect("remove");
    }
    let view = ct.view();
    g.bench_function("commit diff of 200 changes over 2000 files", |b| {
        b.iter(|| diff(std::hint::black_box(&lower), std::hint::black_box(&view)))
    });
    g.finish();
}

fn network(c: &mut Criterion) {
    let mut g = c.benchmark_group("model_network");
    g.bench_function("1000 containers on a /16", |b| {
        b.iter(|| {
            let mut n = Networks::new();
            n.create("n", "br", Subnet::new(Ipv4Addr::new(10, 0, 0, 0), 16), None)
                .expect("create");
            for i in 0..1000 {
                n.run(&format!("c{i}"), Mode::Bridge, Some("n"), None)
                    .expect("run");
            }
            n.kernel()
        })
    });
    g.finish();
}

criterion_group!(benches, union, network);
criterion_main!(benches);
