// SPDX-License-Identifier: GPL-2.0
// The floor for the kernel cost of a streaming tracer: on every
// `sock:inet_sock_set_state`, reserve a fixed-size record in a ring buffer
// and submit it without waking the reader. No field is read, nothing is
// filtered: what any tracer that sends one record per event must pay.
//
// Self-contained (no libbpf headers): `cargo xtask bench` compiles it with
// `clang -O2 -g -target bpf -c floor.bpf.c` and `xtask bench-worker floor`
// loads, attaches and drains it.

typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]

// The size of tcptrace's record (`tracer_common::WireEvent`).
#define RECORD_BYTES 96
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_RB_NO_WAKEUP 1

static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 32 << 20);
} FLOOR_EVENTS SEC(".maps");

SEC("tracepoint/sock/inet_sock_set_state")
int floor_state(void *ctx)
{
	void *rec = bpf_ringbuf_reserve(&FLOOR_EVENTS, RECORD_BYTES, 0);

	if (rec)
		bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
