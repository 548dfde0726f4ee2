// vfio-pci's module init and exit (see khosim/drivers/vfio.h): the
// container node, the live update handler, then the driver, as upstream
// registers its handler before its driver.
#include <cerrno>

#include "khosim/drivers/vfio.h"
#include "khosim/linux/bug.h"
#include "vfio_pci_priv.h"

int vfio_pci_init(void) {
  if (int err = vfio_container_register(); err != 0) return err;
  if (int err = vfio_pci_liveupdate_init(); err != 0) {
    pr_err("vfio-pci: could not register the live update handler: %d", err);
    vfio_container_unregister();
    return err;
  }
  if (int err = pci_register_driver(&vfio_pci_driver); err != 0) {
    vfio_pci_liveupdate_exit();
    vfio_container_unregister();
    return err;
  }
  return 0;
}

int vfio_pci_device_index(struct pci_dev* pdev) {
  struct vfio_pci_core_device* vdev = vfio_pci_core_from_pci(pdev);
  return vdev == nullptr ? -ENODEV : vdev->vdev.index;
}

void vfio_pci_exit(void) {
  pci_unregister_driver(&vfio_pci_driver);
  vfio_pci_liveupdate_exit();
  vfio_container_unregister();
}
