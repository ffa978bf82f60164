/* fiber.cpp - stacks and context switches for the emulation's fibers (see fiber.h). On x86-64 the
 * switch saves the callee-saved registers, MXCSR and the x87 control word on the old stack. */
#include "fiber.h"

#include <cstdint>
#include <sys/mman.h>
#include <unistd.h>

namespace msam_emu {

bool stack_alloc(fiber_stack *s, size_t usable_bytes) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t usable = (usable_bytes + page - 1) / page * page;
    void *p = mmap(nullptr, usable + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    if (mprotect(p, page, PROT_NONE) != 0) {
        munmap(p, usable + page);
        return false;
    }
    s->base = p;
    s->bytes = usable + page;
    return true;
}

void stack_free(fiber_stack *s) {
    if (s->base) munmap(s->base, s->bytes);
    s->base = nullptr;
    s->bytes = 0;
}

#ifdef MSAM_EMU_USE_UCONTEXT

/* makecontext passes int arguments only: the pointer travels in two halves. */
static void ucontext_entry(unsigned lo_fn, unsigned hi_fn, unsigned lo_arg, unsigned hi_arg) {
    auto fn = (void (*)(void *))(((uintptr_t)hi_fn << 32) | lo_fn);
    void *arg = (void *)(((uintptr_t)hi_arg << 32) | lo_arg);
    fn(arg);
}

void fiber_init(fiber_ctx *ctx, const fiber_stack *s, void (*fn)(void *), void *arg) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = (char *)s->base + page;
    ctx->uc.uc_stack.ss_size = s->bytes - page;
    ctx->uc.uc_link = nullptr;
    const uint64_t f = (uint64_t)(uintptr_t)fn, a = (uint64_t)(uintptr_t)arg;
    makecontext(&ctx->uc, (void (*)())ucontext_entry, 4, (unsigned)f, (unsigned)(f >> 32), (unsigned)a,
                (unsigned)(a >> 32));
}

void fiber_switch(fiber_ctx *from, fiber_ctx *to) { swapcontext(&from->uc, &to->uc); }

#else

extern "C" void msam_emu_switch(void **save_sp, void *load_sp);
extern "C" void msam_emu_fiber_entry(void);

/* msam_emu_switch(save_sp, load_sp): push rbp rbx r12-r15 and MXCSR/FPU control word, store rsp,
 * load the other rsp and pop the same. A new fiber "returns" into msam_emu_fiber_entry, which
 * calls r13(r12). */
asm(R"(
    .text
    .globl msam_emu_switch
    .hidden msam_emu_switch
    .type msam_emu_switch,@function
msam_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size msam_emu_switch, .-msam_emu_switch

    .globl msam_emu_fiber_entry
    .hidden msam_emu_fiber_entry
    .type msam_emu_fiber_entry,@function
msam_emu_fiber_entry:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size msam_emu_fiber_entry, .-msam_emu_fiber_entry
)");

void fiber_init(fiber_ctx *ctx, const fiber_stack *s, void (*fn)(void *), void *arg) {
    /* The frame msam_emu_switch pops: control words, r15, r14, r13, r12, rbx, rbp, return
     * address; after the ret rsp = top - 16, 16-aligned for the call in msam_emu_fiber_entry. */
    uintptr_t top = ((uintptr_t)s->base + s->bytes) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 80);
    uint32_t mxcsr;
    uint16_t fcw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fcw));
    sp[0] = (uint64_t)mxcsr | ((uint64_t)fcw << 32);
    sp[1] = 0;                                /* r15 */
    sp[2] = 0;                                /* r14 */
    sp[3] = (uint64_t)(uintptr_t)fn;          /* r13 */
    sp[4] = (uint64_t)(uintptr_t)arg;         /* r12 */
    sp[5] = 0;                                /* rbx */
    sp[6] = 0;                                /* rbp */
    sp[7] = (uint64_t)(uintptr_t)msam_emu_fiber_entry;
    sp[8] = sp[9] = 0;
    ctx->sp = sp;
}

void fiber_switch(fiber_ctx *from, fiber_ctx *to) { msam_emu_switch(&from->sp, to->sp); }

#endif

} // namespace msam_emu
