// DmaEngine: the programmable DMA function of a PCI endpoint (think of a
// data-streaming accelerator's work queue). Software submits descriptors
// through the device's portal; the engine runs them against IOVAs that the
// segment's IOMMU unit translates, in simulated time: it moves bytes only
// when the machine advances it (Run), by a quantum of bytes at a time.
//
// Descriptors:
//   kCopy     read |len| bytes at |src|, write them at |dst|;
//   kFill     write |len| bytes at |dst|, the 8-byte |pattern| repeated;
//   kCounter  write a sequence of little-endian u64 values |pattern|,
//             |pattern|+1, ... into consecutive 8-byte slots of
//             [dst, dst+len); with |repeat| it wraps to dst and never ends
//             (a device streaming into a ring buffer), so slot i always holds
//             the newest value v with (v - pattern) % slots == i.
// Descriptors run in submission order; completed ones are counted.
//
// Interrupts: a descriptor with an |irq_vector| raises that MSI-X vector of
// the function (PciFunction::RaiseMsix, so masks, pending bits and MSI-X
// Enable decide what happens) when it completes, after its last byte is
// written; a repeating kCounter raises it each time it wraps (a ring
// buffer's "one pass done"). An aborted descriptor raises nothing (error
// interrupts are not modelled). The message's handler runs before Run
// returns; if it resets the function or turns bus mastering off, the
// engine stops there for this quantum.
//
// What stops it: bus mastering off in the function's Command register
// (requests are not issued; it resumes when software sets it again), a
// reset of the function (FLR, bus reset, power-on: the queue is dropped),
// and a translation fault (the descriptor is aborted with an error and the
// engine halts until software submits again, as a work queue does).
//
// Every write is shown to the running kernel's DmaMemoryOracle after
// translation: a write into memory the kernel does not hold for this
// device is a stray write. It still lands (real hardware corrupts memory
// silently) unless the host cannot reach the page.
//
// Like config space, the engine's state is hardware: it survives a kexec.
#ifndef KHOSIM_HW_DMA_ENGINE_H_
#define KHOSIM_HW_DMA_ENGINE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <string>

#include "khosim/base/types.h"
#include "khosim/hw/iommu.h"
#include "khosim/hw/pci.h"
#include "khosim/hw/physical_memory.h"

namespace khosim::hw {

enum class DmaOp { kCopy, kFill, kCounter };

struct DmaDescriptor {
  DmaOp op = DmaOp::kFill;
  uint64_t src = 0;  // IOVA (kCopy)
  uint64_t dst = 0;  // IOVA
  uint64_t len = 0;  // bytes; kCounter: a multiple of 8
  uint64_t pattern = 0;
  bool repeat = false;  // kCounter only
  // The MSI-X vector raised at completion (or at each wrap), 0..2047; -1:
  // none. A vector past the function's table is the function's to drop.
  int32_t irq_vector = -1;
};

// Something a device did that the kernel did not want: reported to the
// machine, which adds the kernel and the phase.
struct DmaEvent {
  enum class Kind {
    kFault,       // the IOMMU refused a translation; the engine halted
    kStrayWrite,  // a write landed in memory the kernel owns otherwise
    kStopped,     // bus mastering went off with work pending
  };
  Kind kind = Kind::kFault;
  std::string device;  // the function's name
  uint8_t bus = 0;
  uint8_t devfn = 0;
  uint64_t iova = 0;
  PhysAddr pa;         // kStrayWrite: the page written
  std::string reason;  // fault reason, or the page's owner
};
const char* DmaEventKindName(DmaEvent::Kind kind);
using DmaEventSink = std::function<void(const DmaEvent&)>;

class DmaEngine {
 public:
  enum class State { kIdle, kRunning, kHalted };

  DmaEngine(PciFunction& function, PciHardware& pci, IommuUnit* iommu, PhysicalMemory& memory);
  DmaEngine(const DmaEngine&) = delete;
  DmaEngine& operator=(const DmaEngine&) = delete;

  const PciFunction& function() const { return function_; }
  // The portal: queues |d| (a halted engine starts again). A malformed
  // descriptor (len 0, a kCounter dst or length not a multiple of 8, repeat on
  // another op, irq_vector outside -1..2047) is dropped and counted in
  // rejected().
  void Submit(const DmaDescriptor& d);
  // Drops the queue (the device's own abort register).
  void Abort();

  // Advances the engine by up to |budget| bytes written; returns bytes
  // written. |oracle| may be null (no kernel runs).
  uint64_t Run(uint64_t budget, DmaMemoryOracle* oracle, const DmaEventSink& sink);

  State state() const;
  size_t queued() const { return queue_.size(); }
  uint64_t bytes_written() const { return bytes_written_; }
  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t completed() const { return completed_; }
  uint64_t rejected() const { return rejected_; }
  uint64_t faults() const { return faults_; }
  uint64_t stray_writes() const { return stray_writes_; }
  // kCounter: the next value the running descriptor writes.
  uint64_t next_counter() const;

 private:
  struct Job {
    DmaDescriptor d;
    uint64_t done = 0;  // bytes of the current pass written
    uint64_t seq = 0;   // kCounter: values written so far
  };

  void SyncWithHardware();
  // One chunk of the front job: at most |budget| bytes, within one page of
  // source and destination. False on a fault.
  bool Step(Job& job, uint64_t budget, uint64_t* written, DmaMemoryOracle* oracle,
            const DmaEventSink& sink);
  bool Translate(uint64_t iova, bool write, DmaMemoryOracle* oracle, const DmaEventSink& sink,
                 Translation* t);
  void Write(uint64_t iova, PhysAddr pa, const uint8_t* bytes, uint64_t len,
             DmaMemoryOracle* oracle, const DmaEventSink& sink);

  PciFunction& function_;
  PciHardware& pci_;
  IommuUnit* iommu_;
  PhysicalMemory& memory_;
  std::deque<Job> queue_;
  bool halted_ = false;
  bool stop_reported_ = false;
  uint64_t seen_resets_ = 0;
  uint64_t bytes_written_ = 0;
  uint64_t bytes_read_ = 0;
  uint64_t completed_ = 0;
  uint64_t rejected_ = 0;
  uint64_t faults_ = 0;
  uint64_t stray_writes_ = 0;
};

}  // namespace khosim::hw

#endif  // KHOSIM_HW_DMA_ENGINE_H_
