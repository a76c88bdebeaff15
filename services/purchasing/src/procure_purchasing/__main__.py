from procure_purchasing.app import main

main()
