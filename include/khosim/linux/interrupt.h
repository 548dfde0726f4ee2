// Kernel-face interrupt handlers (<linux/interrupt.h>): a driver attaches a
// handler to a Linux irq number, which it got from pci_irq_vector() (MSI-X
// vectors are the only interrupts the simulator has). Calls resolve to the
// running kernel's irq table (khosim/drivers/irq.h), which dies with the
// kernel: nothing here survives a kexec, while the hardware's MSI-X state
// does.
//
// Context:
//   - request_irq and free_irq: process context (they may sleep upstream).
//     Called from a handler they WARN and go on.
//   - a handler runs in hard irq context: on the machine's thread, inside
//     whatever made the device send the message (Machine::RunDevices for a
//     DMA completion; an unmask that released a pending vector, such as
//     request_irq itself). It must not sleep. Interrupts arriving while a
//     handler runs are taken after it returns, in arrival order.
#ifndef KHOSIM_LINUX_INTERRUPT_H_
#define KHOSIM_LINUX_INTERRUPT_H_

#include "khosim/linux/compiler.h"
#include "khosim/linux/irqreturn.h"

// request_irq flags. Other bits are accepted and ignored.
#define IRQF_SHARED 0x00000080   // the line may have several handlers
#define IRQF_ONESHOT 0x00002000  // must match among sharers

// An irq number that is never connected (request_irq: -ENOTCONN).
#define IRQ_NOTCONNECTED (1U << 31)

// |irq| and the |dev| cookie given to request_irq.
typedef irqreturn_t (*irq_handler_t)(int irq, void* dev);

// Attaches |handler| to |irq|; the first handler starts the line (for an
// MSI-X vector: unmasks it, so a message left pending is handled at once).
// Returns 0, or, checked in this order:
//   -ENOTCONN  |irq| is IRQ_NOTCONNECTED;
//   -EINVAL    IRQF_SHARED without a |dev| cookie; an |irq| this kernel
//              has not allocated; no |handler|;
//   -ENOMEM    the action cannot be allocated (fault point "kmalloc");
//   -EBUSY     |irq| has a handler and not both of them are IRQF_SHARED, or
//              they disagree on IRQF_ONESHOT (logged as a flags mismatch).
// |name| is kept, not copied: it must outlive the handler.
int __must_check request_irq(unsigned int irq, irq_handler_t handler, unsigned long flags,
                             const char* name, void* dev);

// Detaches the handler of |irq| whose cookie is |dev_id|; the last one
// shuts the line down (masks the vector). Returns the |name| it was
// requested with, or NULL: no such irq, or no handler with that cookie
// ("Trying to free already-free IRQ", a WARN).
const void* free_irq(unsigned int irq, void* dev_id);

#endif  // KHOSIM_LINUX_INTERRUPT_H_
