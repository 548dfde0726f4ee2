// Kernel-face PCI core API (<linux/pci.h>): the device and bus objects the
// running kernel's PCI core enumerated, config-space accessors, and the
// driver model. Calls resolve to the running kernel's PCI core
// (khosim/drivers/pci.h).
//
// One deliberate difference from the kernel: struct pci_dev's `class` is
// spelled `class_`, since `class` is a C++ keyword.
//
// Lifetime: the core creates every pci_dev at enumeration and frees them
// with the kernel; this simulation has no hot removal, so a pointer stays
// valid for the boot. pci_dev_get/pci_dev_put count references; one never
// put shows in PciCore::OutstandingRefs(), which the PCI tests check and
// `khosim run` reports as a note of the boot.
// Context: process context; config accessors may be called from any
// callback, including LUO's and the shutdown path.
#ifndef KHOSIM_LINUX_PCI_H_
#define KHOSIM_LINUX_PCI_H_

#include "khosim/linux/device.h"
#include "khosim/linux/pci_regs.h"
#include "khosim/linux/types.h"

#define PCI_ANY_ID (~0u)

// Config accessor results (PCIBIOS_*): a failed access also reads as
// all-ones, as PCI_POSSIBLE_ERROR expects.
#define PCIBIOS_SUCCESSFUL 0x00
#define PCIBIOS_DEVICE_NOT_FOUND 0x86
#define PCIBIOS_BAD_REGISTER_NUMBER 0x87

struct pci_dev;
struct pci_driver;
struct pci_dev_ser;

struct pci_bus {
  struct pci_bus* parent;  // NULL for a root bus
  struct pci_dev* self;    // the bridge leading to this bus; NULL for a root bus
  int domain_nr;
  unsigned char number;        // this bus
  unsigned char primary;       // the bus of |self|
  unsigned char busn_res_end;  // the subordinate bus: the last number below
};

// A device's live update state (CONFIG_PCI_LIVEUPDATE).
struct pci_liveupdate {
  struct pci_dev_ser* outgoing;  // this kernel's entry, while preserved
  struct pci_dev_ser* incoming;  // the previous kernel's, until finished
  bool was_incoming;             // preserved by the previous kernel, for the whole boot
  bool frozen;                   // shut down for kexec: no preserve/unpreserve
};

struct pci_dev {
  struct pci_bus* bus;          // the bus this device sits on
  struct pci_bus* subordinate;  // bridges: the bus behind, once numbered
  unsigned int devfn;
  unsigned short vendor;
  unsigned short device;
  unsigned int class_;  // class << 8 | prog-if, upstream's `class`
  u8 revision;
  u8 hdr_type;
  u8 pcie_cap;  // 0: not PCI Express
  u8 msi_cap;
  u8 msix_cap;
  u16 pcie_flags_reg;
  u16 acs_cap;
  u16 sriov_cap;  // PFs
  u16 ari_cap;
  unsigned int is_virtfn : 1;
  unsigned int is_physfn : 1;
  unsigned int ari_enabled : 1;  // bridges: ARI Forwarding Enable set
  unsigned int is_busmaster : 1;
  struct pci_dev* physfn;  // VFs
  struct pci_driver* driver;
  // sysfs driver_override: only the driver of this name may bind.
  const char* driver_override;
  void* driver_data;
  char name[16];  // "dddd:bb:dd.f", what pci_name() returns
  int refcnt;
  struct pci_liveupdate liveupdate;
  struct device dev;  // on pci_bus_type, named as pci_name()
};

#define to_pci_dev(d) container_of(d, struct pci_dev, dev)

struct pci_device_id {
  u32 vendor, device;
  u32 subvendor, subdevice;
  u32 class_, class_mask;
  unsigned long driver_data;
};

#define PCI_DEVICE(vend, dev) \
  .vendor = (vend), .device = (dev), .subvendor = PCI_ANY_ID, .subdevice = PCI_ANY_ID

struct pci_driver {
  const char* name;
  const struct pci_device_id* id_table;  // terminated by an all-zero entry; may be NULL
  // 0 binds the device; an errno leaves it unbound (logged).
  int (*probe)(struct pci_dev* dev, const struct pci_device_id* id);
  void (*remove)(struct pci_dev* dev);
  // At kexec, from pci_device_shutdown, after the device's live update
  // state is frozen.
  void (*shutdown)(struct pci_dev* dev);
};

static inline int pci_domain_nr(const struct pci_bus* bus) { return bus->domain_nr; }
static inline u16 pci_dev_id(const struct pci_dev* dev) {
  return (u16)((dev->bus->number << 8) | dev->devfn);
}
static inline const char* pci_name(const struct pci_dev* dev) { return dev->name; }
static inline bool pci_is_bridge(const struct pci_dev* dev) {
  return (dev->hdr_type & PCI_HEADER_TYPE_MASK) == PCI_HEADER_TYPE_BRIDGE;
}
static inline bool pci_is_pcie(const struct pci_dev* dev) { return dev->pcie_cap != 0; }
static inline int pci_pcie_type(const struct pci_dev* dev) {
  return (dev->pcie_flags_reg & PCI_EXP_FLAGS_TYPE) >> 4;
}
static inline struct pci_dev* pci_upstream_bridge(struct pci_dev* dev) {
  if (dev->is_virtfn) dev = dev->physfn;
  return dev->bus->self;
}
static inline void* pci_get_drvdata(struct pci_dev* dev) { return dev->driver_data; }
static inline void pci_set_drvdata(struct pci_dev* dev, void* data) { dev->driver_data = data; }

// Config space. 0 (PCIBIOS_SUCCESSFUL) or PCIBIOS_DEVICE_NOT_FOUND when the
// access fails (fault points "pci_config_read" / "pci_config_write"; a
// device nothing answers for reads as all-ones and reports success, as
// real host bridges do).
int pci_read_config_byte(const struct pci_dev* dev, int where, u8* val);
int pci_read_config_word(const struct pci_dev* dev, int where, u16* val);
int pci_read_config_dword(const struct pci_dev* dev, int where, u32* val);
int pci_write_config_byte(const struct pci_dev* dev, int where, u8 val);
int pci_write_config_word(const struct pci_dev* dev, int where, u16 val);
int pci_write_config_dword(const struct pci_dev* dev, int where, u32 val);

// Capability offsets, 0 if absent.
u8 pci_find_capability(struct pci_dev* dev, int cap);
u16 pci_find_ext_capability(struct pci_dev* dev, int cap);

// Enables memory decoding on |dev| and memory decoding plus bus mastering
// on every bridge above it (pci_enable_bridge), so that its DMA can reach
// memory once the device itself masters. 0, or -EIO when a config access
// fails.
int pci_enable_device(struct pci_dev* dev);
// Bus mastering (Command register bit 2) and dev->is_busmaster.
void pci_set_master(struct pci_dev* dev);
void pci_clear_master(struct pci_dev* dev);

// Function Level Reset: 0, or -ENOTTY for a function without FLR.
int pcie_flr(struct pci_dev* dev);

// The device at |domain|:|bus|:|devfn| with a reference, or NULL.
struct pci_dev* pci_get_domain_bus_and_slot(int domain, unsigned int bus, unsigned int devfn);
struct pci_dev* pci_dev_get(struct pci_dev* dev);
void pci_dev_put(struct pci_dev* dev);

// Registers |drv| and probes every unbound device it matches: a device
// whose driver_override names it, or, without an override, one its
// id_table matches. 0, -EINVAL (no name or probe), -EEXIST (name taken).
int pci_register_driver(struct pci_driver* drv);
// Removes |drv| from every device it is bound to (remove()), then forgets it.
void pci_unregister_driver(struct pci_driver* drv);

// ---- Interrupt vectors (drivers/pci/msi/api.c) -------------------------------
// MSI-X is the one interrupt mode modelled (docs/msix.md): MSI and INTx
// requests fail as they would on a device without them. The vectors and
// their Linux irqs belong to this kernel; the device's MSI-X registers are
// hardware and keep whatever this kernel leaves in them across a kexec.
// Context: process context.

#define PCI_IRQ_INTX (1 << 0)  // no INTx line is modelled: never used
#define PCI_IRQ_MSI (1 << 1)   // not modelled: as for a device without MSI
#define PCI_IRQ_MSIX (1 << 2)
#define PCI_IRQ_AFFINITY (1 << 3)  // accepted; one CPU, nothing to spread
#define PCI_IRQ_ALL_TYPES (PCI_IRQ_INTX | PCI_IRQ_MSI | PCI_IRQ_MSIX)

// The number of entries in |dev|'s MSI-X table (read from config space), or
// -EINVAL for a device without MSI-X.
int pci_msix_vec_count(struct pci_dev* dev);

// Allocates between |min_vecs| and |max_vecs| interrupt vectors and returns
// how many it got (as many as the table has, up to |max_vecs|). With
// PCI_IRQ_MSIX it enables MSI-X in config space as upstream does: Enable
// and Function Mask set, a Linux irq for each of vectors 0..n-1, INTx
// disabled, every table entry masked, Function Mask cleared. A vector
// stays masked until request_irq() starts its irq. Errnos, in upstream's
// order (MSI-X first, then whatever the other flags allow):
//   -ERANGE  max_vecs < min_vecs;
//   -EINVAL  MSI-X already enabled on |dev| (WARN_ON_ONCE); max_vecs 0; no
//            MSI-X capability; PCI_IRQ_MSI (MSI is not modelled);
//   -ENOSPC  the table has fewer than |min_vecs| entries; no flag this
//            device can satisfy (PCI_IRQ_INTX alone, or no flags);
//   -ENOMEM  an irq descriptor cannot be allocated (fault point "kmalloc");
//            MSI-X is left disabled;
//   -ENODEV  nothing answers at |dev|'s address.
int pci_alloc_irq_vectors(struct pci_dev* dev, unsigned int min_vecs, unsigned int max_vecs,
                          unsigned int flags);

// Undoes pci_alloc_irq_vectors: masks the vectors, clears MSI-X Enable,
// re-enables INTx, frees the irqs. Nothing when MSI-X is not enabled by
// this kernel. An irq that still has a handler is a driver bug: it WARNs
// and the handler is dropped.
void pci_free_irq_vectors(struct pci_dev* dev);

// The Linux irq of vector |nr| (the MSI-X table index): -EINVAL when |nr|
// was not allocated. With no vectors allocated, 0 for |nr| 0 (dev->irq,
// which is 0: no INTx line) and -EINVAL otherwise.
int pci_irq_vector(struct pci_dev* dev, unsigned int nr);

#endif  // KHOSIM_LINUX_PCI_H_
