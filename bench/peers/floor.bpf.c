// SPDX-License-Identifier: GPL-2.0
// The floor for the kernel cost of a streaming tracer: on every
// `sock:inet_sock_set_state`, reserve a fixed-size record in this CPU's
// ring buffer and submit it without waking the reader. No field is read,
// nothing is filtered: what any tracer that sends one record per event
// must pay. A ring per CPU, as tcptrace has (one ring shared by all CPUs
// adds the contention for its lock: about 215 ns per transition instead of
// 93 in the FIN storm on two CPUs).
//
// Self-contained (no libbpf headers): `cargo xtask bench` compiles it with
// `clang -O2 -g -target bpf -c floor.bpf.c` and `xtask bench-worker floor`
// loads it, makes the rings, attaches and drains it.

typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]

// The size of tcptrace's record (`tracer_common::WireEvent`).
#define RECORD_BYTES 96
#define BPF_MAP_TYPE_ARRAY_OF_MAPS 12
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_RB_NO_WAKEUP 1

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u32 (*bpf_get_smp_processor_id)(void) = (void *)8;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;

// The inner map's template; the worker makes the real rings.
struct ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
};

// Slot n: the ring CPU n writes to.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__array(values, struct ring);
} FLOOR_RINGS SEC(".maps");

SEC("tracepoint/sock/inet_sock_set_state")
int floor_state(void *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	void *ring = bpf_map_lookup_elem(&FLOOR_RINGS, &cpu);
	void *rec;

	if (!ring)
		return 0;
	rec = bpf_ringbuf_reserve(ring, RECORD_BYTES, 0);
	if (rec)
		bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
