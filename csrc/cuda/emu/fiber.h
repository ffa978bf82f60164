/* fiber.h - minimal cooperative fibers for the CUDA emulation: one stack per emulated GPU thread,
 * switched explicitly (no preemption), so a block's threads can wait for each other at barriers.
 * x86-64 uses a few lines of assembly (no system call per switch); elsewhere ucontext. */
#ifndef MSAM_CUDA_EMU_FIBER_H
#define MSAM_CUDA_EMU_FIBER_H

#include <cstddef>

#if !defined(__x86_64__) || defined(MSAM_EMU_UCONTEXT)
#include <ucontext.h>
#define MSAM_EMU_USE_UCONTEXT 1
#endif

namespace msam_emu {

/* A fiber stack: mmap'ed, with an inaccessible guard page below it so an overflow faults. */
struct fiber_stack {
    void *base = nullptr; /* start of the mapping (the guard page) */
    size_t bytes = 0;     /* the whole mapping */
};
bool stack_alloc(fiber_stack *s, size_t usable_bytes);
void stack_free(fiber_stack *s);

/* A saved execution context. */
struct fiber_ctx {
#ifdef MSAM_EMU_USE_UCONTEXT
    ucontext_t uc;
#else
    void *sp = nullptr;
#endif
};

/* Prepares ctx to run fn(arg) on stack s when first switched to; fn must never return (it
 * switches away for the last time instead). */
void fiber_init(fiber_ctx *ctx, const fiber_stack *s, void (*fn)(void *), void *arg);
/* Saves the running context into from and resumes to. */
void fiber_switch(fiber_ctx *from, fiber_ctx *to);

} // namespace msam_emu

#endif
