// PciLiveUpdate: the PCI core's live update state in one kernel (upstream's
// static pci_liveupdate global and the FLB "pci"), and the hooks the core's
// enumeration and shutdown call. The kernel face (linux/pci_liveupdate.h)
// documents the driver-facing contract; the ABI is linux/kho/abi/pci.h.
//
// Locking: rwsem_ mirrors pci_liveupdate.rwsem. It is held by preserve,
// unpreserve, finish, device setup and freeze; the FLB's callbacks run
// under LUO's FLB locks, taken inside it, and never take it themselves.
#ifndef KHOSIM_LIB_DRIVERS_PCI_LIVEUPDATE_H_
#define KHOSIM_LIB_DRIVERS_PCI_LIVEUPDATE_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "khosim/drivers/pci.h"
#include "khosim/linux/kho/abi/pci.h"
#include "khosim/linux/liveupdate.h"
#include "khosim/linux/pci.h"

namespace khosim::drivers {

// The FLB every linked handler shares (one object for every kernel: LUO
// keys its per-boot state by it).
extern struct liveupdate_flb pci_liveupdate_flb;

class PciLiveUpdate {
 public:
  PciLiveUpdate();
  ~PciLiveUpdate();
  PciLiveUpdate(const PciLiveUpdate&) = delete;
  PciLiveUpdate& operator=(const PciLiveUpdate&) = delete;

  // linux/pci_liveupdate.h
  int Preserve(struct pci_dev* dev) ABSL_LOCKS_EXCLUDED(rwsem_);
  void Unpreserve(struct pci_dev* dev) ABSL_LOCKS_EXCLUDED(rwsem_);
  void Finish(struct pci_dev* dev) ABSL_LOCKS_EXCLUDED(rwsem_);
  bool IsIncoming(const struct pci_dev* dev) ABSL_LOCKS_EXCLUDED(rwsem_);

  // Enumeration: whether |dev| came in preserved (marks it). Panics where
  // upstream panics: an incoming FLB that cannot be retrieved.
  void SetupDevice(struct pci_dev* dev) ABSL_LOCKS_EXCLUDED(rwsem_);
  // Keep every bridge's bus numbers for the rest of this boot.
  bool PreserveBusNumbers() const { return had_incoming_.load(); }
  // A preserved bridge on |bus| came up without bus numbers: the core
  // must not number anything on it (logs which one).
  bool RefuseBusNumbers(const struct pci_bus* bus, const std::vector<struct pci_dev*>& on_bus);
  // 0 when the device's current ACS control / ARI forwarding is kept as
  // the previous kernel left it; -EINVAL when the core sets it as usual.
  int AdoptAcs(const struct pci_dev* dev);
  int AdoptAri(struct pci_dev* bridge) ABSL_LOCKS_EXCLUDED(rwsem_);
  // Shutdown: no preserve or unpreserve of |dev| from now on.
  void Freeze(struct pci_dev* dev) ABSL_LOCKS_EXCLUDED(rwsem_);
  // Shutdown: preserved for the next kernel (WARNs once unless frozen).
  bool IsOutgoing(struct pci_dev* dev) ABSL_LOCKS_EXCLUDED(rwsem_);

  // The FLB's callbacks (LUO calls them under its own FLB locks).
  int FlbPreserve(struct liveupdate_flb_op_args* args);
  void FlbUnpreserve(struct liveupdate_flb_op_args* args);
  int FlbRetrieve(struct liveupdate_flb_op_args* args);
  void FlbFinish(struct liveupdate_flb_op_args* args);

 private:
  struct Outgoing;
  struct Incoming;

  int PreserveOne(Outgoing& out, struct pci_dev* dev, bool endpoint)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rwsem_);
  int UnpreserveOne(Outgoing& out, struct pci_dev* dev) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rwsem_);
  int FinishOne(Incoming& in, struct pci_dev* dev) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rwsem_);

  // The FLB's objects (args->obj), owned here so that nothing of this
  // kernel outlives it: at most one of each per boot.
  std::unique_ptr<Outgoing> outgoing_;
  std::unique_ptr<Incoming> incoming_;
  absl::Mutex rwsem_;
  // Set by the FLB's retrieve when any device came in preserved; never
  // cleared in this boot.
  std::atomic<bool> had_incoming_{false};
};

}  // namespace khosim::drivers

#endif  // KHOSIM_LIB_DRIVERS_PCI_LIVEUPDATE_H_
