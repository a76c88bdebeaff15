"""The inventory service of the procurement platform."""

from procure_inventory.app import main

main()
