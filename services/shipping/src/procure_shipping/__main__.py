from procure_shipping.app import main

main()
