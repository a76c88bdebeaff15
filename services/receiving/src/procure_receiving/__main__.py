from procure_receiving.app import main

main()
