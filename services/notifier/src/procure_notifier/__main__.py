"""The notifier service of the procurement platform."""

from procure_notifier.app import main

main()
