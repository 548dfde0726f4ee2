// What the IOMMU costs: per DMA byte, per preserved mapping, and in the
// blackout. Every row stands next to a limit measured in the same run:
//
//   translate/<path>        a DMA engine writing a 4 MiB ring through a unit in
//                           64 KiB quanta (bytes per second):
//     iotlb                 4 KiB leaves, a 1 MiB ring the IOTLB holds
//     walk                  the 4 MiB ring, the IOTLB invalidated before
//                           every quantum: a 4-level walk (root, context and
//                           four table reads) per 4 KiB page; a 4 MiB ring
//                           misses the 512-entry IOTLB anyway
//     untranslated          translation off: the engine's own cost
//     memset_limit          std::memset of the same bytes into the same
//                           simulated memory (the physical limit)
//   preserve/mapped:<G>/leaf:<L>   iommu_preserve_domain of a domain
//                           mapping <G> GiB of IOVA with <L> leaves, per
//                           table page preserved (counter table_pages)
//   preserve/mapped:<G>/leaf:<L>/kho_limit   kho_preserve_pages of as
//                           many single pages: what KHO alone costs
//   blackout/mapped:<G>     a kexec with that domain preserved: kernel B's
//                           pci_iommu_init (adopting the unit, restoring
//                           every table page) against the whole boot
//                           (counters iommu_init_s, boot_s, share)
#include <fcntl.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench_util.h"
#include "benchmark/benchmark.h"
#include "khosim/drivers/iommu.h"
#include "khosim/handlers/pci_passthrough.h"
#include "khosim/hw/dma_engine.h"
#include "khosim/hw/iommu.h"
#include "khosim/hw/pci.h"
#include "khosim/linux/intel_iommu_regs.h"
#include "khosim/linux/iommu.h"
#include "khosim/linux/kexec_handover.h"
#include "khosim/linux/mm.h"
#include "khosim/linux/pci_regs.h"
#include "khosim/luo/client.h"
#include "khosim/machine/builtin_modules.h"
#include "khosim/machine/machine.h"

namespace khosim {
namespace {

constexpr uint64_t kRegion = 4 * kMiB;  // one MAX_PAGE_ORDER block
constexpr uint64_t kQuantum = 64 * kKiB;

// ---- translate -------------------------------------------------------------

// A machine with the example PCI hardware and nvme0's domain mapping
// kRegion at IOVA 4 GiB with 4 KiB leaves.
struct TranslateRig {
  TranslateRig() : m(Config()) {
    m.Boot();
    m.Activate();
    struct pci_dev* pdev = m.kernel().pci()->FindFunction(*m.pci().Find("nvme0"));
    pci_set_master(pdev);
    struct device* dev = &pdev->dev;
    iommu_device_claim_dma_owner(dev, this);
    domain = iommu_paging_domain_alloc(dev);
    iommu_attach_device(domain, dev);
    struct page* pages = alloc_pages(GFP_KERNEL, 10);
    base = page_to_phys(pages);
    for (uint64_t off = 0; off < kRegion; off += 4096) {
      iommu_map(domain, 4 * kGiB + off, base + off, 4096, IOMMU_READ | IOMMU_WRITE, GFP_KERNEL);
    }
    engine = m.dma_engine("nvme0");
    engine->Submit(hw::DmaDescriptor{
        .op = hw::DmaOp::kCounter, .dst = 4 * kGiB, .len = kRegion, .repeat = true});
  }
  static MachineConfig Config() {
    MachineConfig c{.ram = 512 * kMiB, .seed = 3};
    c.pci = hw::PciExampleTopology();
    c.dma_quantum = kQuantum;
    return c;
  }
  Machine m;
  struct iommu_domain* domain = nullptr;
  uint64_t base = 0;
  hw::DmaEngine* engine = nullptr;
};

void BM_Translate(benchmark::State& state, int mode) {
  TranslateRig rig;
  hw::IommuUnit& unit = *rig.m.iommu()->Unit(0);
  if (mode == 0) {
    // A ring the IOTLB holds (256 of its 512 entries).
    rig.engine->Abort();
    rig.engine->Submit(hw::DmaDescriptor{
        .op = hw::DmaOp::kCounter, .dst = 4 * kGiB, .len = kRegion / 4, .repeat = true});
  }
  if (mode == 2) {
    unit.WriteReg(DMAR_GCMD_REG, 0);  // untranslated: IOVA = PA
    rig.engine->Abort();
    rig.engine->Submit(hw::DmaDescriptor{
        .op = hw::DmaOp::kCounter, .dst = rig.base, .len = kRegion, .repeat = true});
  }
  const uint32_t iotlb = ecap_iotlb_offset(unit.ReadReg(DMAR_ECAP_REG)) + DMAR_IOTLB_REG_OFFSET;
  uint8_t* target = rig.m.memory().Virt(PhysAddr(rig.base));
  uint64_t offset = 0;
  const uint64_t walks = unit.walks();
  for (auto _ : state) {
    if (mode == 1) unit.WriteReg(iotlb, DMA_TLB_IVT | DMA_TLB_GLOBAL_FLUSH);
    if (mode == 3) {
      std::memset(target + offset, static_cast<int>(offset), kQuantum);
      offset = (offset + kQuantum) % kRegion;
      benchmark::ClobberMemory();
    } else {
      rig.m.RunDevices("bench");
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kQuantum));
  state.counters["walks_per_4k"] = benchmark::Counter(static_cast<double>(unit.walks() - walks) /
                                                      (state.iterations() * (kQuantum / 4096.0)));
  // Untranslated writes are stray by the oracle's rules (the kernel mapped
  // the pages at IOVA 4 GiB, not at their physical address): still checked,
  // which is part of the cost measured.
  if (mode < 2 && !rig.m.dma_events().empty()) {
    state.SkipWithError(rig.m.dma_events()[0].event.reason.c_str());
  }
}

// ---- preserve and blackout ----------------------------------------------------

// A machine whose nvme0 domain maps |gib| GiB of IOVA (from 4 GiB on, onto
// the same 1 GiB of physical memory over and over: the tables are what
// costs) with |leaf| leaves, its pci-passthrough file preserved so the
// IOMMU FLB is live.
struct PreserveRig {
  PreserveRig(uint64_t gib, uint64_t leaf) : m(Config()) {
    m.Boot();
    m.Activate();
    fs::Process& p = m.kernel().vfs().CreateProcess("vmm");
    struct pci_dev* pdev = m.kernel().pci()->FindFunction(*m.pci().Find("nvme0"));
    m.kernel().pci()->SetDriverOverride(pdev, PCI_PASSTHROUGH_DRIVER_NAME);
    m.kernel().pci()->Bind(pdev);
    const int lu = luo::OpenLiveupdate(p);
    session = luo::CreateSession(p, lu, "vm0");
    // A second endpoint's file keeps the FLB alive; nvme0 is ours.
    struct pci_dev* other = m.kernel().pci()->FindFunction(*m.pci().Find("nvme1"));
    m.kernel().pci()->SetDriverOverride(other, PCI_PASSTHROUGH_DRIVER_NAME);
    m.kernel().pci()->Bind(other);
    const int fd =
        p.Open(absl::StrCat("/dev/" PCI_PASSTHROUGH_DRIVER_NAME "/", pci_name(other)), O_RDWR);
    luo::PreserveFd(p, session, fd, 1);
    dev = &pdev->dev;
    iommu_device_claim_dma_owner(dev, this);
    domain = iommu_paging_domain_alloc(dev);
    iommu_attach_device(domain, dev);
    for (uint64_t off = 0; off < gib * kGiB; off += leaf) {
      iommu_map(domain, 4 * kGiB + off, 2 * kGiB + off % kGiB, leaf, IOMMU_READ | IOMMU_WRITE,
                GFP_KERNEL);
    }
    tables = drivers::IommuCore::FromFace(domain)->tables.size();
  }
  static MachineConfig Config() {
    MachineConfig c{.ram = 4 * kGiB, .seed = 3};
    c.cmdline = "kho=on liveupdate=on";
    c.build = KernelBuild{{kMemfdModule, kPciPassthroughModule}};
    c.pci = hw::PciExampleTopology();
    return c;
  }
  Machine m;
  int session = -1;
  struct device* dev = nullptr;
  struct iommu_domain* domain = nullptr;
  size_t tables = 0;
};

void BM_PreserveDomain(benchmark::State& state, uint64_t gib, uint64_t leaf, bool kho_limit) {
  PreserveRig rig(gib, leaf);
  std::vector<struct page*> pages;
  if (kho_limit) {
    for (size_t i = 0; i < rig.tables; ++i) pages.push_back(alloc_pages(GFP_KERNEL, 0));
  }
  for (auto _ : state) {
    if (kho_limit) {
      for (struct page* page : pages) kho_preserve_pages(page, 1);
      state.PauseTiming();
      for (struct page* page : pages) kho_unpreserve_pages(page, 1);
      state.ResumeTiming();
    } else {
      if (iommu_preserve_domain(rig.domain) != 0) state.SkipWithError("preserve failed");
      state.PauseTiming();
      iommu_unpreserve_domain(rig.domain);
      state.ResumeTiming();
    }
  }
  state.counters["table_pages"] = static_cast<double>(rig.tables);
  state.counters["per_table_page"] =
      benchmark::Counter(static_cast<double>(state.iterations() * rig.tables),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_Blackout(benchmark::State& state, uint64_t gib) {
  double iommu_init = 0;
  double boot = 0;
  size_t tables = 0;
  for (auto _ : state) {
    state.PauseTiming();
    PreserveRig rig(gib, 2 * kMiB);
    iommu_preserve_domain(rig.domain);
    iommu_preserve_device(rig.domain, rig.dev, 7);
    tables = rig.tables;
    state.ResumeTiming();
    if (!rig.m.Kexec().ok()) state.SkipWithError("kexec failed");
    state.PauseTiming();
    for (const BootStepTime& step : rig.m.kernel().boot_steps()) {
      if (step.name == "initcall:pci_iommu_init") iommu_init += step.seconds;
    }
    boot += rig.m.last_kexec_times().boot_s;
    state.ResumeTiming();
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["table_pages"] = static_cast<double>(tables);
  state.counters["iommu_init_s"] = iommu_init / n;
  state.counters["boot_s"] = boot / n;
  state.counters["share"] = boot > 0 ? iommu_init / boot : 0;
}

void RegisterAll(double min_time) {
  const char* names[] = {"iotlb", "walk", "untranslated", "memset_limit"};
  for (int mode = 0; mode < 4; ++mode) {
    benchmark::RegisterBenchmark(absl::StrCat("translate/", names[mode]).c_str(), BM_Translate,
                                 mode)
        ->MinTime(min_time);
  }
  struct Size {
    uint64_t gib;
    uint64_t leaf;
  };
  for (Size s : {Size{1, 4 * kKiB}, Size{4, 4 * kKiB}, Size{1, 2 * kMiB}, Size{64, 2 * kMiB},
                 Size{1024, 2 * kMiB}}) {
    const std::string leaf = s.leaf == 4 * kKiB ? "4K" : "2M";
    for (bool limit : {false, true}) {
      benchmark::RegisterBenchmark(
          absl::StrFormat("preserve/mapped:%d/leaf:%s%s", s.gib, leaf, limit ? "/kho_limit" : "")
              .c_str(),
          BM_PreserveDomain, s.gib, s.leaf, limit)
          ->Unit(benchmark::kMicrosecond)
          ->MinTime(min_time);
    }
  }
  for (uint64_t gib : {1, 64, 1024}) {
    benchmark::RegisterBenchmark(absl::StrFormat("blackout/mapped:%d", gib).c_str(), BM_Blackout,
                                 gib)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  }
}

}  // namespace
}  // namespace khosim

int main(int argc, char** argv) {
  return khosim::bench::RunSuite(
      argc, argv,
      {{"khosim_machine",
        "example PCI hardware; translate: 512 MiB RAM, 64 KiB DMA quanta; preserve and "
        "blackout: 4 GiB RAM, kho=on liveupdate=on"}},
      [](double min_time) { khosim::RegisterAll(min_time); });
}
