// Runner::Impl, verification: every retrieved file against its generator,
// every byte (full) or the data ranges by hash plus sampled pages (sample),
// with the first divergence named.
#include "runner_impl.h"

namespace khosim::scenario {

bool Runner::Impl::VerifyPhase(int boot, BootReport& br, const std::vector<RetrievedFile>& files) {
  uint64_t total = 0;
  for (const RetrievedFile& f : files) {
    if (f.ref->verify != VerifyMode::kNone) total += s_.FindFile(f.ref->file)->size;
  }
  if (files.empty()) return true;
  Phase phase(*this, boot, "verify", total);
  for (const RetrievedFile& f : files) {
    if (!VerifyFile(boot, f, phase, br)) return false;
  }
  return true;
}

// The hash of the file's expected data: the bytes of its generator's
// data ranges, in order (cached per file). Holes are not in it: they are
// compared byte for byte (full) or sampled.
uint64_t Runner::Impl::ExpectedHash(const FileSpec& spec) {
  auto it = expected_hash_.find(spec.name);
  if (it != expected_hash_.end()) return it->second;
  const Content content(spec, s_.machine.seed);
  std::vector<uint8_t> buf(kChunk);
  ContentHash hash;
  for (const Extent& e : content.data()) {
    for (uint64_t off = e.offset; off < e.offset + e.length; off += kChunk) {
      const uint64_t n = std::min(kChunk, e.offset + e.length - off);
      content.Fill(off, buf.data(), n);
      hash.Update(buf.data(), n);
    }
  }
  return expected_hash_[spec.name] = hash.value();
}

bool Runner::Impl::VerifyFile(int boot, const RetrievedFile& f, Phase& phase, BootReport& br) {
  const FileSpec& spec = *s_.FindFile(f.ref->file);
  fs::Process& p = *f.process;
  FileCheck check;
  check.boot = boot;
  check.process = p.name();
  check.session = f.session->name;
  check.token = f.ref->token;
  check.file = spec.name;
  check.size = spec.size;
  check.verify = f.ref->verify == VerifyMode::kFull     ? "full"
                 : f.ref->verify == VerifyMode::kSample ? "sample"
                                                        : "none";
  check.handler = f.handler;
  if (spec.kind == FileKind::kDevice) return VerifyDevice(boot, f, check);
  if (spec.kind == FileKind::kIommufd) {
    // Its HWPTs were restored by the reclaim phase, or the run stopped.
    check.verify = "iommufd";
    check.ok = true;
    report_.files.push_back(check);
    return true;
  }
  const std::string where = absl::StrFormat("boot %d: file %s (session \"%s\", token %s)", boot,
                                            spec.name, f.session->name, Token(f.ref->token));
  const loff_t size = p.Lseek(f.fd, 0, SEEK_END);
  if (size != static_cast<loff_t>(spec.size)) {
    report_.files.push_back(check);
    return Lost(
        boot, f.session->name, f.ref,
        absl::StrFormat("%s: size %d after the kexec, expected %d", where, size, spec.size));
  }
  if (f.ref->verify == VerifyMode::kNone) {
    check.ok = true;
    report_.files.push_back(check);
    return true;
  }
  // A device's DMA overwrote the generator's bytes: the counter ring is
  // what must be there.
  if (s_.DmaDeviceOf(spec.name) != nullptr) {
    if (!VerifyDmaRing(boot, f, check)) return false;
    phase.Advance(spec.size);
    br.bytes_verified += spec.size;
    report_.bytes_verified += spec.size;
    return true;
  }
  const Content content(spec, s_.machine.seed);
  const bool full = f.ref->verify == VerifyMode::kFull;
  std::vector<uint8_t> got(kChunk);
  std::vector<uint8_t> want(kChunk);
  ContentHash hash;
  std::optional<uint64_t> first_bad;
  int expected = -1;
  int found = -1;
  uint64_t bad_pages = 0;
  const uint64_t page = s_.machine.page_size;
  // Reads [off, off + n) into |got|; false (and the run stopped) if the
  // read came up short.
  auto read = [&](uint64_t off, uint64_t n) {
    const ssize_t r = p.Pread(f.fd, got.data(), n, static_cast<loff_t>(off));
    if (r == static_cast<ssize_t>(n)) return true;
    report_.files.push_back(check);
    return Stop(Outcome::kFailed, absl::StrFormat("%s: pread at %d returned %s", where, off,
                                                  r < 0 ? ErrnoName(r) : absl::StrCat(r)));
  };
  if (full) {
    // Every byte, holes included; the hash takes the data ranges' bytes
    // as they go by.
    const std::vector<Extent>& data = content.data();
    size_t next = 0;  // the first data range not yet wholly hashed
    for (uint64_t off = 0; off < spec.size; off += kChunk) {
      const uint64_t n = std::min(kChunk, spec.size - off);
      if (!read(off, n)) return false;
      for (size_t i = next; i < data.size() && data[i].offset < off + n; ++i) {
        const uint64_t lo = std::max(off, data[i].offset);
        const uint64_t hi = std::min(off + n, data[i].offset + data[i].length);
        if (lo < hi) hash.Update(got.data() + (lo - off), hi - lo);
        if (data[i].offset + data[i].length <= off + n) next = i + 1;
      }
      content.Fill(off, want.data(), n);
      CompareChunk(off, got.data(), want.data(), n, page, &first_bad, &expected, &found,
                   &bad_pages);
      check.bytes_compared += n;
      phase.Advance(n);
    }
    check.hash = hash.value();
  } else {
    // The data ranges through the hash, holes by sampled pages only: a
    // file of many GiB with little data is verified without reading its
    // holes (each read of one would cost host memory).
    for (const Extent& e : content.data()) {
      for (uint64_t off = e.offset; off < e.offset + e.length; off += kChunk) {
        const uint64_t n = std::min(kChunk, e.offset + e.length - off);
        if (!read(off, n)) return false;
        hash.Update(got.data(), n);
        phase.Advance(n);
      }
    }
    check.hash = hash.value();
    // Sampled pages byte for byte, anywhere in the file.
    uint64_t x = content.seed() ^ 0x5eed;
    const uint64_t pages = spec.size / page;
    std::vector<uint8_t> one(page);
    std::vector<uint8_t> exp(page);
    for (int i = 0; i < kSamplePages && pages > 0; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      const uint64_t off = ((x >> 17) % pages) * page;
      p.Pread(f.fd, one.data(), page, static_cast<loff_t>(off));
      content.Fill(off, exp.data(), page);
      CompareChunk(off, one.data(), exp.data(), page, page, &first_bad, &expected, &found,
                   &bad_pages);
      check.bytes_compared += page;
    }
    if (!first_bad && hash.value() != ExpectedHash(spec)) {
      // The samples missed it: it is in the data ranges (the hash covers
      // nothing else); find the first difference there.
      for (const Extent& e : content.data()) {
        for (uint64_t off = e.offset; off < e.offset + e.length && !first_bad; off += kChunk) {
          const uint64_t n = std::min(kChunk, e.offset + e.length - off);
          p.Pread(f.fd, got.data(), n, static_cast<loff_t>(off));
          content.Fill(off, want.data(), n);
          CompareChunk(off, got.data(), want.data(), n, page, &first_bad, &expected, &found,
                       &bad_pages);
        }
      }
    }
    phase.Advance(spec.size - content.data_bytes());
  }
  if (first_bad) {
    report_.files.push_back(check);
    Divergence d;
    d.boot = boot;
    d.file = spec.name;
    d.session = f.session->name;
    d.token = f.ref->token;
    d.offset = first_bad;
    d.expected = expected;
    d.found = found;
    d.pages_differing = bad_pages;
    std::string hint;
    if (found == hw::kPoisonByte && s_.machine.scrub == mm::FreeMemoryPolicy::kPoison) {
      hint = " (the scrub poison: that page was not preserved)";
    }
    d.what = absl::StrFormat(
        "%s: first divergence at byte 0x%x (page %d): expected 0x%02x, found 0x%02x%s; %d %s "
        "differ%s",
        where, *first_bad, *first_bad / page, expected, found, hint, bad_pages,
        bad_pages == 1 ? "page" : "pages", full ? "" : " among those compared");
    report_.divergence = d;
    return Stop(Outcome::kDataLoss, d.what);
  }
  check.ok = true;
  report_.files.push_back(check);
  br.bytes_verified += check.bytes_compared;
  report_.bytes_verified += check.bytes_compared;
  return true;
}

void Runner::Impl::CompareChunk(uint64_t off, const uint8_t* got, const uint8_t* want, uint64_t n,
                                uint64_t page, std::optional<uint64_t>* first_bad, int* expected,
                                int* found, uint64_t* bad_pages) {
  if (std::memcmp(got, want, n) == 0) return;
  for (uint64_t po = 0; po < n; po += page) {
    const uint64_t len = std::min(page, n - po);
    if (std::memcmp(got + po, want + po, len) == 0) continue;
    ++*bad_pages;
    if (*first_bad) continue;
    for (uint64_t i = po; i < po + len; ++i) {
      if (got[i] != want[i]) {
        *first_bad = off + i;
        *expected = want[i];
        *found = got[i];
        break;
      }
    }
  }
}

}  // namespace khosim::scenario
