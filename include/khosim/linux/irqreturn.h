// Kernel-face interrupt handler results (<linux/irqreturn.h>).
#ifndef KHOSIM_LINUX_IRQRETURN_H_
#define KHOSIM_LINUX_IRQRETURN_H_

// What a handler returns: IRQ_NONE when the interrupt was not its device's,
// IRQ_HANDLED when it was. IRQ_WAKE_THREAD is defined for completeness;
// threaded handlers are not modelled, so it counts as handled.
enum irqreturn {
  IRQ_NONE = 0,
  IRQ_HANDLED = 1 << 0,
  IRQ_WAKE_THREAD = 1 << 1,
};
typedef enum irqreturn irqreturn_t;

#define IRQ_RETVAL(x) ((x) ? IRQ_HANDLED : IRQ_NONE)

#endif  // KHOSIM_LINUX_IRQRETURN_H_
