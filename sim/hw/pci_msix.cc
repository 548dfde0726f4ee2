// A function's MSI-X logic: the per-vector mask and pending bits and when a
// signalled vector becomes a message. See "MSI-X" in khosim/hw/pci.h.
//
// Lifecycle: the bits are created with the function (a VF: when VF Enable
// creates it) and put back to their reset values by every reset of the
// function (FLR, bus reset, power-on): every vector masked, none pending.
// Nothing else touches them: a kexec leaves them as the last kernel did.
// Messages are sent from three places: RaiseMsix (an unmasked vector), a
// config write of Message Control (PciHardware::Write) and an unmask
// (SetMsixVectorMasked), the last two for vectors left pending.
#include <cstdint>

#include "khosim/hw/pci.h"
#include "khosim/linux/pci_regs.h"

namespace khosim::hw {

uint16_t PciFunction::msix_table_size() const {
  if (msix_cap() == 0) return 0;
  return static_cast<uint16_t>((Peek(msix_cap() + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE) + 1);
}

bool PciFunction::msix_enabled() const {
  return msix_cap() != 0 && (Peek(msix_cap() + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_ENABLE) != 0;
}

bool PciFunction::msix_function_masked() const {
  return msix_cap() != 0 && (Peek(msix_cap() + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_MASKALL) != 0;
}

bool PciFunction::msix_vector_masked(uint16_t vector) const {
  return vector >= msix_masked_.size() || msix_masked_[vector];
}

bool PciFunction::msix_pending(uint16_t vector) const {
  return vector < msix_pending_.size() && msix_pending_[vector];
}

bool PciFunction::memory_decoding() const {
  if (physfn_ != nullptr) {
    const uint16_t sriov = physfn_->sriov_cap();
    return sriov != 0 && (physfn_->Peek(sriov + PCI_SRIOV_CTRL, 2) & PCI_SRIOV_CTRL_MSE) != 0;
  }
  return (Peek(PCI_COMMAND, 2) & PCI_COMMAND_MEMORY) != 0;
}

void PciFunction::ResetMsix() {
  const uint16_t size = msix_table_size();
  msix_masked_.assign(size, true);
  msix_pending_.assign(size, false);
}

void PciFunction::SendMsix(MsixMessage::Kind kind, uint16_t vector, const char* reason) {
  if (kind == MsixMessage::Kind::kSent) {
    ++msix_sent_;
  } else {
    ++msix_lost_;
  }
  if (hw_ != nullptr && hw_->msix_sink()) {
    hw_->msix_sink()(
        MsixMessage{.kind = kind, .function = this, .vector = vector, .reason = reason});
  }
}

void PciFunction::SendPendingMsix() {
  // The sink may run a handler that changes the bits (or resets the
  // function), so every step re-reads them.
  for (uint16_t v = 0; v < msix_pending_.size(); ++v) {
    if (!msix_enabled() || msix_function_masked()) return;
    if (!msix_pending_[v] || msix_masked_[v]) continue;
    msix_pending_[v] = false;
    SendMsix(MsixMessage::Kind::kSent, v, "");
  }
}

bool PciFunction::SetMsixVectorMasked(uint16_t vector, bool masked) {
  if (vector >= msix_masked_.size() || !memory_decoding()) return false;
  msix_masked_[vector] = masked;
  if (!masked && msix_pending_[vector] && msix_enabled() && !msix_function_masked()) {
    msix_pending_[vector] = false;
    SendMsix(MsixMessage::Kind::kSent, vector, "");
  }
  return true;
}

void PciFunction::RaiseMsix(uint16_t vector) {
  if (vector >= msix_table_size()) {
    SendMsix(MsixMessage::Kind::kLost, vector, "no such vector");
    return;
  }
  if (!msix_enabled()) {
    SendMsix(MsixMessage::Kind::kLost, vector, "MSI-X disabled");
    return;
  }
  if (msix_function_masked() || msix_masked_[vector]) {
    msix_pending_[vector] = true;
    return;
  }
  SendMsix(MsixMessage::Kind::kSent, vector, "");
}

}  // namespace khosim::hw
