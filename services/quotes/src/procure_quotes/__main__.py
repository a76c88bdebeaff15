from procure_quotes.app import main

main()
