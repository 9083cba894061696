/*
 * Start-up code of convgen's test programs on QEMU's MPS2 AN386 board (Cortex-M4F): the
 * vector table, the copy of initialized data, the FPU switched on, newlib's semihosting
 * handles opened (stdin, stdout and stderr reach the host through QEMU), then main; its
 * return value is the program's exit status (semihosting's exit).  GNU C: the vector
 * table's section attribute and the barriers after enabling the FPU.
 */
#include <stdint.h>
#include <stdlib.h>

extern int main(void);
extern void initialise_monitor_handles(void);
extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];

void convgen_reset(void);
void convgen_fault(void);

/* Initial stack pointer, then reset, NMI, hard fault, memory, bus and usage faults. */
__attribute__((section(".vectors"), used))
static const uintptr_t convgen_vectors[7] = {
    (uintptr_t)_estack, (uintptr_t)convgen_reset, (uintptr_t)convgen_fault,
    (uintptr_t)convgen_fault, (uintptr_t)convgen_fault, (uintptr_t)convgen_fault,
    (uintptr_t)convgen_fault,
};

/* A fault ends the program with status 70 (semihosting exit), not a hang. */
void convgen_fault(void)
{
    exit(70);
}

void convgen_reset(void)
{
    uint32_t *from = _sidata, *to = _sdata;
    while (to < _edata) {
        *to++ = *from++;
    }
    for (to = _sbss; to < _ebss; ++to) {
        *to = 0;
    }
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: CP10, CP11 full access */
    __asm volatile("dsb\n\tisb" ::: "memory");
    initialise_monitor_handles();
    exit(main());
}
