/* scheduler.cpp - runs an emulated grid: blocks spread over worker OS threads, each block's
 * threads as fibers resumed in turn until they all reach the barrier, exit, or nothing can move. */
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "emu_internal.h"
#include "fiber.h"

namespace msam_emu {

thread_local const thread_coords *tls_coords = nullptr;

namespace {

enum class fstate { ready, wait_block, wait_warp, done, failed };

struct block_state;

struct emu_thread {
    thread_coords coords;
    fiber_ctx ctx;
    fstate st = fstate::ready;
    int linear = 0, lane = 0, warp = 0;
    int pos = 0; /* index in the block's resumption order */
    const char *file = nullptr; /* the __syncthreads it waits at */
    int line = 0;
    block_state *blk = nullptr;
};

/* Shuffles alternate between two slot sets: a lane can write set p again only after the warp
 * barrier of the shuffle in between, which every lane reaches after reading set p. */
struct warp_state {
    uint64_t slot[2][32];
    int size = 0, arrived = 0, phase = 0;
};

struct block_state {
    std::vector<emu_thread> threads;
    std::vector<warp_state> warps;
    int at_barrier = 0, done = 0;
    fiber_ctx sched;
    const std::function<void()> *body = nullptr;
    std::vector<unsigned char> dyn; /* dynamic shared memory */
    std::vector<int> order;         /* resumption order: thread indices */
    std::string error;
};

thread_local block_state *tls_block = nullptr;
thread_local emu_thread *tls_thread = nullptr;

/* ---- order of resumption ---- */
std::atomic<int> g_order{-1};
std::atomic<unsigned> g_seed{1};

int order_mode() {
    int o = g_order.load();
    if (o < 0) {
        const char *e = getenv("MSAM_EMU_ORDER");
        o = 0;
        if (e && !strcmp(e, "reverse")) o = 1;
        if (e && !strcmp(e, "shuffle")) o = 2;
        g_order.store(o);
    }
    return o;
}

/* ---- fiber stacks, pooled across launches ---- */
std::mutex g_stack_mu;
std::vector<fiber_stack> g_stacks;

size_t stack_bytes() {
    static size_t bytes = [] {
        const char *e = getenv("MSAM_EMU_STACK_KB");
        long kb = e ? atol(e) : 0;
        return (size_t)(kb >= 16 ? kb : 64) * 1024;
    }();
    return bytes;
}

bool take_stacks(std::vector<fiber_stack> *out, int n) {
    {
        std::lock_guard<std::mutex> lock(g_stack_mu);
        while ((int)out->size() < n && !g_stacks.empty()) {
            out->push_back(g_stacks.back());
            g_stacks.pop_back();
        }
    }
    while ((int)out->size() < n) {
        fiber_stack s;
        if (!stack_alloc(&s, stack_bytes())) return false;
        out->push_back(s);
    }
    return true;
}

void give_stacks(std::vector<fiber_stack> *s) {
    std::lock_guard<std::mutex> lock(g_stack_mu);
    g_stacks.insert(g_stacks.end(), s->begin(), s->end());
    s->clear();
}

/* ---- fibers ---- */
/* A thread that waits or ends hands over to the next ready thread after it in the order, or, at
 * the end of a pass (or on an error), back to the scheduler, which starts the next pass. */
void yield_to_scheduler(emu_thread *t) {
    block_state *b = t->blk;
    if (b->error.empty()) {
        const int n = (int)b->order.size();
        for (int k = t->pos + 1; k < n; k++) {
            emu_thread *u = &b->threads[b->order[k]];
            if (u->st != fstate::ready) continue;
            tls_thread = u;
            tls_coords = &u->coords;
            fiber_switch(&t->ctx, &u->ctx);
            return;
        }
    }
    fiber_switch(&t->ctx, &b->sched);
}

void fiber_main(void *p) {
    emu_thread *t = static_cast<emu_thread *>(p);
    (*t->blk->body)();
    t->st = fstate::done;
    t->blk->done++;
    yield_to_scheduler(t); /* a finished thread is never resumed */
    abort();               /* unreachable */
}

std::string describe(const emu_thread &t) {
    char buf[96];
    snprintf(buf, sizeof buf, "thread (%u,%u,%u) of block (%u,%u,%u)", t.coords.tid.x, t.coords.tid.y,
             t.coords.tid.z, t.coords.bid.x, t.coords.bid.y, t.coords.bid.z);
    return buf;
}

std::string site(const emu_thread &t) { return std::string(t.file ? t.file : "?") + ":" + std::to_string(t.line); }

void fail(emu_thread *t, const std::string &what) {
    if (t->blk->error.empty()) t->blk->error = what;
    t->st = fstate::failed;
    yield_to_scheduler(t);
}

/* Nothing is runnable: say why (a barrier some threads never reach). */
std::string diagnose_stall(const block_state &b) {
    const emu_thread *waiting = nullptr, *exited = nullptr, *shuffling = nullptr;
    for (const emu_thread &t : b.threads) {
        if (t.st == fstate::wait_block && !waiting) waiting = &t;
        if (t.st == fstate::done && !exited) exited = &t;
        if (t.st == fstate::wait_warp && !shuffling) shuffling = &t;
    }
    if (shuffling) {
        const warp_state &w = b.warps[shuffling->warp];
        for (const emu_thread &t : b.threads)
            if (t.warp == shuffling->warp && t.st != fstate::wait_warp)
                return "divergent warp shuffle: " + describe(*shuffling) + " waits in a shuffle, but lane " +
                       std::to_string(t.lane) + " of its warp " +
                       (t.st == fstate::done ? std::string("has exited")
                                             : "waits at __syncthreads (" + site(t) + ")") +
                       " (" + std::to_string(w.arrived) + " of " + std::to_string(w.size) + " lanes arrived)";
    }
    if (waiting && exited)
        return "divergent __syncthreads: " + describe(*exited) + " exited while " + describe(*waiting) +
               " (and " + std::to_string(b.at_barrier - 1) + " more) wait at __syncthreads (" + site(*waiting) + ")";
    return "block stalled with no runnable thread";
}

/* The last thread reached a barrier: check all wait at the same one, then release them. */
void release_block_barrier(block_state *b) {
    const emu_thread &first = b->threads[0];
    for (emu_thread &t : b->threads)
        if (t.file != first.file || t.line != first.line) {
            b->error = "divergent __syncthreads: " + describe(first) + " waits at " + site(first) + " but " +
                       describe(t) + " at " + site(t);
            return;
        }
    for (emu_thread &t : b->threads) t.st = fstate::ready;
    b->at_barrier = 0;
}

void warp_barrier(emu_thread *t) {
    block_state *b = t->blk;
    warp_state &w = b->warps[t->warp];
    t->st = fstate::wait_warp;
    if (++w.arrived == w.size) {
        for (int i = t->warp * 32; i < t->warp * 32 + w.size; i++) b->threads[i].st = fstate::ready;
        w.arrived = 0;
        w.phase ^= 1;
    }
    yield_to_scheduler(t);
}

/* Runs one block to completion (or failure) on this worker thread. */
void run_block(block_state *b, std::vector<fiber_stack> &stacks, std::mt19937 &rng) {
    const int n = (int)b->threads.size();
    b->at_barrier = b->done = 0;
    b->error.clear();
    for (warp_state &w : b->warps) w.arrived = w.phase = 0;
    std::fill(b->dyn.begin(), b->dyn.end(), (unsigned char)0xff); /* NaN floats, -1 ints */
    for (int i = 0; i < n; i++) {
        emu_thread &t = b->threads[i];
        t.st = fstate::ready;
        t.file = nullptr;
        t.line = 0;
        fiber_init(&t.ctx, &stacks[i], fiber_main, &t);
    }
    tls_block = b;
    /* A pass resumes the ready threads in order, each handing over to the next (see
     * yield_to_scheduler); nothing ready at the start of a pass means a stall. */
    while (b->done < n && b->error.empty()) {
        if (order_mode() == 2) {
            std::shuffle(b->order.begin(), b->order.end(), rng);
            for (int k = 0; k < n; k++) b->threads[b->order[k]].pos = k;
        }
        emu_thread *first = nullptr;
        for (int k = 0; k < n && !first; k++)
            if (b->threads[b->order[k]].st == fstate::ready) first = &b->threads[b->order[k]];
        if (!first) {
            b->error = diagnose_stall(*b);
            break;
        }
        tls_thread = first;
        tls_coords = &first->coords;
        fiber_switch(&b->sched, &first->ctx);
    }
    tls_thread = nullptr;
    tls_coords = nullptr;
    tls_block = nullptr;
}

} // namespace

/* ---- the built-ins kernels call ---- */
void syncthreads(const char *file, int line) {
    emu_thread *t = tls_thread;
    if (!t) return; /* host code: nothing to wait for */
    t->st = fstate::wait_block;
    t->file = file;
    t->line = line;
    block_state *b = t->blk;
    if (++b->at_barrier == (int)b->threads.size()) release_block_barrier(b);
    yield_to_scheduler(t);
}

void syncwarp() {
    if (tls_thread) warp_barrier(tls_thread);
}

int lane_id() { return tls_thread ? tls_thread->lane : 0; }

void *dynamic_shared() { return tls_block && !tls_block->dyn.empty() ? tls_block->dyn.data() : nullptr; }

uint64_t warp_exchange(unsigned mask, uint64_t mine, int src, const char *what) {
    emu_thread *t = tls_thread;
    if (!t) return mine;
    block_state *b = t->blk;
    warp_state &w = b->warps[t->warp];
    const unsigned present = w.size == 32 ? 0xffffffffu : ((1u << w.size) - 1);
    if ((mask & present) != present)
        fail(t, std::string(what) + " with mask " + std::to_string(mask) +
                    ": the emulation supports only masks naming every lane of the warp (" + describe(*t) + ")");
    if (src < 0 || src >= w.size)
        fail(t, std::string(what) + " reads lane " + std::to_string(src) + " of a warp of " + std::to_string(w.size) +
                    " threads (block size not a multiple of 32) in " + describe(*t));
    const int set = w.phase;
    w.slot[set][t->lane] = mine;
    warp_barrier(t); /* everyone has written (the last to arrive flipped w.phase) */
    return w.slot[set][src];
}

unsigned warp_ballot(unsigned mask, int pred) {
    emu_thread *t = tls_thread;
    if (!t) return pred ? 1u : 0u;
    const warp_state &w = t->blk->warps[t->warp];
    const int set = w.phase;
    warp_exchange(mask, pred != 0, t->lane, "__ballot_sync"); /* writes slot[set], waits for the warp */
    unsigned bits = 0;
    for (int l = 0; l < w.size; l++)
        if (w.slot[set][l]) bits |= 1u << l;
    return bits;
}

cudaError_t check_config(const void *kernel, dim3 grid, dim3 block, size_t shmem, std::string *msg) {
    const unsigned long long nt = (unsigned long long)block.x * block.y * block.z;
    char buf[200];
    if (nt == 0 || nt > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
        snprintf(buf, sizeof buf, "invalid block (%u,%u,%u): 1 to 1024 threads, z <= 64", block.x, block.y, block.z);
    } else if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
        snprintf(buf, sizeof buf, "invalid grid (%u,%u,%u)", grid.x, grid.y, grid.z);
    } else if (shmem > dynamic_shared_limit(kernel)) {
        snprintf(buf, sizeof buf,
                 "%zu bytes of dynamic shared memory over the kernel's limit of %zu (raise it with "
                 "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize), at most %zu)",
                 shmem, dynamic_shared_limit(kernel), max_dynamic_shared_optin);
    } else {
        return cudaSuccess;
    }
    *msg = buf;
    return cudaErrorInvalidConfiguration;
}

cudaError_t run_grid(dim3 grid, dim3 block, size_t shmem, const std::function<void()> &body, std::string *msg) {
    const long long nblocks = (long long)grid.x * grid.y * grid.z;
    const int nthreads = (int)(block.x * block.y * block.z);
    static const int max_workers = [] {
        const char *e = getenv("MSAM_EMU_WORKERS");
        int n = e ? atoi(e) : (int)std::thread::hardware_concurrency();
        return n < 1 ? 1 : n > 64 ? 64 : n;
    }();
    const int workers = (int)std::min<long long>(nblocks, max_workers);
    std::atomic<long long> next{0};
    std::atomic<bool> failed{false};
    std::mutex err_mu;
    std::string first_error;

    auto work = [&](unsigned seed) {
        std::vector<fiber_stack> stacks;
        if (!take_stacks(&stacks, nthreads)) {
            std::lock_guard<std::mutex> lock(err_mu);
            if (first_error.empty()) first_error = "out of memory for fiber stacks";
            failed = true;
            give_stacks(&stacks);
            return;
        }
        block_state b;
        b.body = &body;
        b.dyn.resize(shmem);
        b.threads.resize(nthreads);
        b.warps.resize((nthreads + 31) / 32);
        for (int i = 0; i < nthreads; i++) {
            emu_thread &t = b.threads[i];
            t.linear = i;
            t.lane = i % 32;
            t.warp = i / 32;
            t.blk = &b;
            t.coords.tid = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
            t.coords.bdim = block;
            t.coords.gdim = grid;
            b.warps[t.warp].size++;
        }
        b.order.resize(nthreads);
        for (int i = 0; i < nthreads; i++) b.order[i] = order_mode() == 1 ? nthreads - 1 - i : i;
        for (int k = 0; k < nthreads; k++) b.threads[b.order[k]].pos = k;
        std::mt19937 rng(seed);
        while (!failed) {
            const long long bi = next++;
            if (bi >= nblocks) break;
            const uint3 bid{(unsigned)(bi % grid.x), (unsigned)((bi / grid.x) % grid.y),
                            (unsigned)(bi / ((long long)grid.x * grid.y))};
            for (emu_thread &t : b.threads) t.coords.bid = bid;
            run_block(&b, stacks, rng);
            if (!b.error.empty()) {
                std::lock_guard<std::mutex> lock(err_mu);
                if (first_error.empty()) first_error = b.error;
                failed = true;
            }
        }
        give_stacks(&stacks);
    };

    const unsigned seed = g_seed.load();
    std::vector<std::thread> pool;
    for (int i = 1; i < workers; i++) pool.emplace_back(work, seed + (unsigned)i);
    work(seed);
    for (std::thread &th : pool) th.join();
    if (failed) {
        *msg = first_error;
        return cudaErrorLaunchFailure;
    }
    return cudaSuccess;
}

} // namespace msam_emu

extern "C" void msam_emu_set_order(int order, unsigned seed) {
    msam_emu::g_order.store(order < 0 || order > 2 ? 0 : order);
    msam_emu::g_seed.store(seed);
}
